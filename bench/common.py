"""Shared pieces of the bench: figures, statistics, a relay-shell over stdio, /proc readings, profiles.

A bench script measures one or more *figures*. Each :class:`Figure` carries the measured
value, the floor measured in the same run, their ratio, the target and whether it holds,
plus a note (why a target was missed and what would close it). A script hands its figures
to :func:`emit`: with ``BENCH_RESULTS`` set (``bench/run`` does that) they are appended to
that file as JSON lines, otherwise they are printed.

Every figure is measured inside :func:`measure`, so one figure that fails records an
``error`` row and the script goes on with the next one.

Import from a bench script (``bench/`` and the repository root are on ``sys.path`` when a
script runs as ``python bench/<script>.py`` from the root, or under ``bench/run``)::

    from common import Figure, emit, measure, relay_stdio, summarize, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")
RELAY = str(VENV_BIN / "relay-shell")
PY_SPY = VENV_BIN / "py-spy"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.sshd

Holds = Literal["yes", "no", "missing", "error"]
CALL_TIMEOUT_S = 120.0


@dataclass
class Figure:
    """One row of the table. ``ratio`` is measured / floor (None when it has no meaning)."""

    key: str
    title: str
    value: str = ""
    floor: str = ""
    ratio: float | None = None
    target: str = ""
    holds: Holds = "error"
    note: str = ""
    details: dict[str, object] = field(default_factory=dict)

    def judge(self, ok: bool) -> Figure:
        self.holds = "yes" if ok else "no"
        return self


def emit(figures: Sequence[Figure]) -> None:
    """Append the figures to ``$BENCH_RESULTS`` (JSON lines), or print them when it is unset."""
    target = os.environ.get("BENCH_RESULTS")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            for figure in figures:
                out.write(json.dumps(asdict(figure)) + "\n")
        return
    for figure in figures:
        ratio = f"{figure.ratio:.2f}x" if figure.ratio is not None else "-"
        print(f"{figure.key:4} {figure.title}: {figure.value} | floor {figure.floor} | {ratio} | "
              f"target {figure.target} | holds {figure.holds}")  # fmt: skip
        if figure.note:
            print(f"     note: {figure.note}")


async def measure(
    figures: list[Figure], key: str, title: str, target: str, body: Callable[[Figure], Awaitable[None]]
) -> None:
    """Run ``body`` on a fresh figure; an exception becomes an ``error`` row, never a crash."""
    figure = Figure(key=key, title=title, target=target)
    started = time.monotonic()
    try:
        await body(figure)
    except Exception as exc:
        figure.holds = "error"
        figure.note = f"bench failed: {type(exc).__name__}: {exc}"[:600]
        traceback.print_exc()
    figure.details["bench_seconds"] = round(time.monotonic() - started, 1)
    figures.append(figure)
    print(f"[{key}] {figure.holds}: {figure.value} (floor {figure.floor})", flush=True)


# --- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float
    p99: float
    mean: float
    max: float

    def ms(self) -> str:
        return f"p50 {self.p50 * 1000:.2f} ms, p99 {self.p99 * 1000:.2f} ms"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(values: Sequence[float]) -> Stats:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    return Stats(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p99=percentile(ordered, 0.99),
        mean=sum(ordered) / len(ordered),
        max=ordered[-1],
    )


async def timed(count: int, action: Callable[[], Awaitable[object]]) -> list[float]:
    """Wall seconds of ``count`` sequential runs of ``action``."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return samples


async def interleaved(
    actions: dict[str, Callable[[], Awaitable[object]]], count: int, batch: int = 50
) -> dict[str, list[float]]:
    """``count`` timed runs of each action, in alternating batches, so a change of load on the
    machine during the measurement hits every action alike (ratios stay comparable)."""
    samples: dict[str, list[float]] = {name: [] for name in actions}
    while any(len(done) < count for done in samples.values()):
        for name, action in actions.items():
            samples[name] += await timed(min(batch, count - len(samples[name])), action)
    return samples


def ratio(value: float, floor: float) -> float:
    return value / floor if floor > 0 else float("inf")


# --- relay-shell over stdio ---------------------------------------------------------------------


def state_dir(prefix: str = "relay-bench-") -> Path:
    """A temp directory traversable by the sshd test user (for keys and inventories)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    return directory


def in_process_settings(state: Path) -> Any:
    """Settings of an in-process relay-shell (``build_server``) whose state lives under
    ``state``, unanchored; typed loosely so this module imports without the package."""
    from relay_shell.config import load_settings

    return load_settings(
        audit_path=state / "audit" / "audit.jsonl",
        ssh_config=state / "ssh_config",
        ssh_known_hosts_file=state / "known_hosts",
        auth_state_dir=state / "oauth",
        audit_anchor="off",
    )


def relay_env(state: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for a relay-shell whose state lives under ``state``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "RELAY_SHELL_AUDIT_PATH": str(state / "audit" / "audit.jsonl"),
        "RELAY_SHELL_AUDIT_ANCHOR": "off",
        "RELAY_SHELL_SSH_CONFIG": str(state / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(state / "known_hosts"),
        "RELAY_SHELL_AUTH_STATE_DIR": str(state / "oauth"),
    }
    env.update(extra)
    return env


@dataclass
class RelayStdio:
    """A connected official MCP client and the pid of the relay-shell process behind it."""

    client: object  # mcp.Client; typed loosely so this module imports without the SDK
    pid: int
    state: Path
    stderr_path: Path

    async def call(self, tool: str, arguments: dict[str, object]) -> CallResult:
        from mcp import Client

        assert isinstance(self.client, Client)
        result = await self.client.call_tool(tool, arguments)
        return CallResult(bool(result.is_error), dict(result.structured_content or {}), _text(result))


@dataclass(frozen=True)
class CallResult:
    is_error: bool
    data: dict[str, object]
    text: str

    @property
    def error_kind(self) -> str | None:
        error = self.data.get("error")
        return str(error.get("kind")) if isinstance(error, dict) else None


def _text(result: object) -> str:
    content = getattr(result, "content", None) or []
    return "".join(str(getattr(block, "text", "")) for block in content)


@contextlib.asynccontextmanager
async def relay_stdio(
    state: Path, *, command: Sequence[str] = (RELAY,), **extra_env: str
) -> AsyncIterator[RelayStdio]:
    """relay-shell (or ``command``) started by the official stdio client; stderr goes to a file."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=command[0], args=list(command[1:]), env=relay_env(state, **extra_env), cwd=str(state)
    )
    stderr_path = state / "server.stderr"
    before = set(children_of(os.getpid()))
    with stderr_path.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=CALL_TIMEOUT_S) as client:
            started = [pid for pid in children_of(os.getpid()) if pid not in before]
            if len(started) != 1:
                raise RuntimeError(f"expected one server child, found {started}")
            yield RelayStdio(client, started[0], state, stderr_path)


# --- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def children_of(parent: int) -> list[int]:
    """Live (non-zombie) direct children of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == parent and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def descendants_of(parent: int) -> list[int]:
    """Every live descendant of ``parent`` (children first)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[0] not in ("Z", "X"):
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [parent]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def pids_with_marker(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (this process excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = _stat_fields(int(entry.name))
        if marker in cmdline and fields and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` and the other ``Vm*`` lines of /proc/PID/status, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5, Linux >= 4.0); False when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def wait_until(predicate: Callable[[], bool], deadline_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``deadline_s`` passes; returns its last value."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


def kill_tree(pid: int) -> None:
    for victim in [pid, *descendants_of(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


# --- profiling --------------------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(pid: int, output: Path, rate: int = 500) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw collapsed stacks to ``output``) while the block runs.

    Does nothing when py-spy is not installed (``bench/run`` installs it into the venv).
    """
    if not PY_SPY.exists():
        yield
        return
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
         "--nonblocking", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.3)  # py-spy attaches asynchronously; samples before attaching are lost anyway
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=5)


def profile_command(argv: Sequence[str], output: Path, rate: int = 500) -> str:
    """Run ``argv`` (stdin: /dev/null) under py-spy; summarize where it spent its time (:func:`profile_summary`)."""
    if not PY_SPY.exists():
        return "no profile (py-spy not installed)"
    subprocess.run(
        [str(PY_SPY), "record", "--format", "raw", "--rate", str(rate), "--nonblocking",
         "--output", str(output), "--", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False,
    )  # fmt: skip
    return profile_summary(output)


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")
IDLE_LEAVES = (
    "EpollSelector.select",
    "Condition.wait",
    "WorkerThread.run",
    "_worker (concurrent/futures/thread.py:89)",
)
"""Leaf frames that are waiting, not working: the event loop's poll, idle threads (anyio's, and the
default executor's waiting on its queue), blocking reads."""
HINTS = {
    "Condition.notify": "the SDK's stdio transport hands every message to and from a worker thread "
    "(anyio to_thread); reading and writing the pipes on the event loop would remove that hand-off (SDK side)",
    "Popen._execute_child": "process creation (fork/exec in subprocess, inside the server's event loop "
    "thread) is a visible share of the server's own CPU",
    "is_chain_value": "check the 64-hex shape with one compiled regex instead of a per-character generator",
    "dumps_jsonl": "every record is JSON-encoded again for the exactness check and again for the chain "
    "link; encoding once and reusing the bytes would cut that",
    "OutputCapture.feed": "capture cost per chunk (SHA-256 of every byte plus head/tail bookkeeping) bounds "
    "the throughput; larger reads (256 KiB) would halve the per-chunk overhead, the hash itself stays",
    "_UnixReadPipeTransport._read_ready": "asyncio pipe reads of 64 KiB each; bigger reads straight from "
    "the fd mean fewer event-loop turns",
    "_SelectorSocketTransport.write": "asyncssh writes each SSH packet to the socket as it is produced",
    "GenerateJsonSchema": "tool registration builds every tool's input and output JSON schema with pydantic "
    "when the server is built; the register() calls with the largest inclusive share are where to look",
    "_scrub": "redaction of the audited arguments runs on every call",
}
"""Frame name fragments -> what a profile dominated by them suggests (quoted only when >= 5 %)."""


def profile_summary(raw: Path, *, top: int = 6, focus: str = "relay_shell/") -> str:
    """Where the busy samples went: leaf functions by share, and the heaviest ``focus`` frames.

    Samples whose leaf is in :data:`IDLE_LEAVES` count as idle and are left out of the shares;
    ``cli.py`` frames (present in every stack) are left out of the ``focus`` list.
    """
    if not raw.exists() or raw.stat().st_size == 0:
        return "no profile (py-spy unavailable or no samples)"
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(frame) for frame in stack.split(";") if frame.strip()]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            idle += count  # waiting, or no Python frame at all (interpreter start-up, native threads)
            continue
        busy += count
        leaf[frames[-1]] += count
        for function in {_without_line(frame) for frame in frames}:
            inclusive[function] += count
    if not busy:
        return "no busy samples"
    leaves = ", ".join(f"{name} {count / busy:.0%}" for name, count in leaf.most_common(top))
    own = [(n, c) for n, c in inclusive.most_common() if focus in n and "cli.py" not in n][:top]
    mine = ", ".join(f"{name} {count / busy:.0%}" for name, count in own)
    heavy = [name for name, count in (leaf + Counter(dict(own))).items() if count / busy >= 0.05]
    hints = [hint for fragment, hint in HINTS.items() if any(fragment in name for name in heavy)]
    return (
        f"{busy} busy samples ({idle} idle left out); busiest leaves: {leaves}; "
        f"relay_shell frames (inclusive): {mine or 'none'}"
        + (f". What the profile suggests: {'; '.join(hints)}" if hints else "")
    )


def _without_line(frame: str) -> str:
    """``f (file.py:12)`` -> ``f (file.py)``: one entry per function for inclusive shares."""
    return re.sub(r":\d+\)$", ")", frame)


def _short_frame(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame.strip() or "(unnamed native frame)"
    file = match["file"].split("site-packages/")[-1]
    if not match["function"].strip():
        return f"(unnamed frame in {file})"
    return (
        f"{match['function']} ({file}:{match['line']})" if match["line"] else f"{match['function']} ({file})"
    )


# --- odds and ends ----------------------------------------------------------------------------


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_main(main: Callable[[], Coroutine[object, object, list[Figure]]]) -> None:
    """Entry point of a bench script: measure, emit, exit 0 (failures are rows, not exit codes)."""
    figures = asyncio.run(main())
    emit(figures)
