"""P7: cold start, process start to the ``initialize`` answer, vs a bare MCPServer with one no-op tool.

Each round starts ``relay-shell`` (stdio) and ``bench/bare_server.py`` once (interleaved), writes
an ``initialize`` request and times until the answer line arrives; the median of ROUNDS.

When relay-shell misses the target, both are run again under ``python -X importtime`` and the
note says which packages only relay-shell imports, what they cost, and which relay_shell
module pulls in the heavy packages stdio mode does not need (asyncssh, prometheus_client,
starlette, uvicorn, jwt, cryptography).

    .venv/bin/python bench/p7_coldstart.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    BENCH,
    PYTHON,
    RELAY,
    Figure,
    measure,
    profile_command,
    ratio,
    relay_env,
    remove_tree,
    run_main,
    state_dir,
)

ROUNDS = 7
TARGET_RATIO = 1.2
INITIALIZE = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}\n'
)
RELAY_IMPORTS = (
    "import importlib, pkgutil, relay_shell.cli, relay_shell.app, relay_shell.tools\n"
    "for module in pkgutil.iter_modules(relay_shell.tools.__path__, 'relay_shell.tools.'):\n"
    "    importlib.import_module(module.name)\n"
)
BARE_IMPORTS = "import mcp.server.mcpserver\n"
RELAY_MAIN = "import sys\nfrom relay_shell.cli import main\nsys.argv = ['relay-shell']\nsys.exit(main())\n"
NOT_NEEDED_FOR_STDIO = ("asyncssh", "prometheus_client", "starlette", "uvicorn", "jwt", "cryptography")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def time_to_initialize(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Seconds from spawn to the initialize answer, and the process's stderr (after stdin EOF)."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(INITIALIZE)
            process.stdin.flush()
            answer = process.stdout.readline()
            elapsed = time.perf_counter() - started
            if b'"result"' not in answer:
                raise RuntimeError(f"no initialize result from {argv}: {answer[:200]!r}")
            process.stdin.close()
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            process.stdout.close()
        errors.seek(0)
        return elapsed, errors.read().decode(errors="replace")


@dataclass(frozen=True)
class Imported:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[Imported]:
    found = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            depth = len(match[3]) // 2
            found.append(Imported(match[4], int(match[1]), int(match[2]), depth))
    return found


def import_chain(imports: list[Imported], package: str) -> str | None:
    """Who pulled ``package`` in: its importers up to the first relay_shell module (post-order input)."""
    for index, item in enumerate(imports):
        if item.name == package or item.name.startswith(package + "."):
            chain, depth = [item.name], item.depth
            for later in imports[index + 1 :]:
                if later.depth < depth:
                    depth = later.depth
                    chain.append(later.name)
                    if later.name.startswith("relay_shell"):
                        return " <- ".join(chain)
            return " <- ".join(chain)
    return None


def import_seconds(code: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], env=env, cwd=cwd, check=True, timeout=60)
    return time.perf_counter() - started


def import_analysis(state: Path, gap_s: float) -> str:
    env = relay_env(state)
    _, relay_err = time_to_initialize([PYTHON, "-X", "importtime", "-c", RELAY_MAIN], env, state)
    _, bare_err = time_to_initialize([PYTHON, "-X", "importtime", str(BENCH / "bare_server.py")], env, state)
    relay, bare = parse_importtime(relay_err), parse_importtime(bare_err)
    bare_names = {item.name for item in bare}
    extra: dict[str, int] = {}
    for item in relay:
        if item.name not in bare_names:
            top = item.name.split(".")[0]
            extra[top] = extra.get(top, 0) + item.self_us
    total_relay = sum(item.self_us for item in relay) / 1e6
    total_bare = sum(item.self_us for item in bare) / 1e6
    heaviest = ", ".join(
        f"{name} {us / 1000:.0f} ms" for name, us in sorted(extra.items(), key=lambda kv: -kv[1])[:8]
    )
    culprits = []
    for package in NOT_NEEDED_FOR_STDIO:
        cost = sum(
            item.self_us
            for item in relay
            if item.name.split(".")[0] == package and item.name not in bare_names
        )
        chain = import_chain(relay, package) or ""
        if cost > 0:
            via = "the mcp SDK" if " <- mcp" in chain else chain.split(" <- ")[-1]
            culprits.append(f"{package} {cost / 1000:.0f} ms via {via}")
    own = sorted(
        (item for item in relay if item.name.startswith("relay_shell")), key=lambda item: -item.self_us
    )
    own_text = ", ".join(f"{item.name} {item.self_us / 1000:.0f} ms" for item in own[:4])
    relay_import, bare_import = [], []
    for _ in range(ROUNDS):
        relay_import.append(import_seconds(RELAY_IMPORTS, env, state))
        bare_import.append(import_seconds(BARE_IMPORTS, env, state))
    import_gap = statistics.median(relay_import) - statistics.median(bare_import)
    return (
        f"Gap {gap_s * 1000:.0f} ms. Importing what stdio serving imports (relay_shell.cli, .app, every "
        f"tool module) takes {statistics.median(relay_import) * 1000:.0f} ms vs "
        f"{statistics.median(bare_import) * 1000:.0f} ms for mcp.server.mcpserver alone (medians of {ROUNDS}, "
        f"process start included), so imports are about {import_gap * 1000:.0f} ms of the gap and start-up "
        f"work after them (settings, inventory, tool registration and schemas, services) the other "
        f"{(gap_s - import_gap) * 1000:.0f} ms. -X importtime (inflated, one run each): {total_relay:.2f} s vs "
        f"{total_bare:.2f} s of imports; "
        f"imported only by relay-shell (self time by package): {heaviest}; slowest relay_shell modules: {own_text}. "
        f"Not needed for stdio yet imported at start: {'; '.join(culprits) or 'none'}."
    )


async def coldstart(figure: Figure) -> None:
    state = state_dir()
    try:
        env = relay_env(state)
        relay_samples, bare_samples = [], []
        for _ in range(ROUNDS):
            relay_samples.append(time_to_initialize([RELAY], env, state)[0])
            bare_samples.append(time_to_initialize([PYTHON, str(BENCH / "bare_server.py")], env, state)[0])
        value, floor = statistics.median(relay_samples), statistics.median(bare_samples)
        figure.value, figure.floor = f"{value * 1000:.0f} ms", f"{floor * 1000:.0f} ms"
        figure.ratio = ratio(value, floor)
        figure.judge(figure.ratio <= TARGET_RATIO)
        figure.details = {
            "relay_ms": [round(s * 1000) for s in relay_samples],
            "bare_ms": [round(s * 1000) for s in bare_samples],
        }
        figure.note = f"median of {ROUNDS} interleaved starts each (spawn to initialize answer)."
        if figure.holds == "no":
            figure.note += " " + import_analysis(state, value - floor)
            startup = profile_command([RELAY], state / "p7.pyspy", rate=1000)
            figure.note += f" Profile of one start (stdin at EOF, so it exits once serving begins): {startup}"
    finally:
        remove_tree(state)


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(
        figures, "P7", "cold start to initialize answered (stdio)", f"<= {TARGET_RATIO}x", coldstart
    )
    return figures


if __name__ == "__main__":
    run_main(main)
