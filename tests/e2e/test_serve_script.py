"""``scripts/serve`` a second time: no install, no package index, the server answers at once.

The copy of the repository holds the scripts and the lock files next to a virtualenv whose
install stamp matches them. The venv is built here (``--without-pip``) on top of this test
run's installed tree, and its own ``pip`` is a trap that records being run and fails, so an
install attempt is seen even if it would have succeeded. The package index is a closed
loopback port and ``PIP_NO_INDEX=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import venv
from pathlib import Path

from tests.conftest import initialize_line

ROOT = Path(__file__).resolve().parents[2]
LOCK_FILES = ("requirements.txt", "pyproject.toml")  # what scripts/setup hashes for the runtime tree
STAMP = ".venv/.relay-shell-installed"
INITIALIZE = initialize_line("2025-06-18")
PIP_TRAP = """import pathlib, sys
pathlib.Path({marker!r}).write_text(" ".join(sys.argv))
sys.exit("pip must not run on a second start")
"""
ENTRY_POINT = """#!{python}
import sys
from relay_shell.cli import main
sys.exit(main())
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_checkout(root: Path, pip_marker: Path) -> Path:
    """A copy of the repo's scripts and lock files with a ready venv and a matching stamp."""
    shutil.copytree(ROOT / "scripts", root / "scripts")
    for name in (*LOCK_FILES, "requirements-dev.txt"):
        shutil.copy2(ROOT / name, root / name)
    env_dir = root / ".venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    installed = sysconfig.get_paths()["purelib"]  # this test run's tree (relay-shell and its dependencies)
    (site_packages / "installed_tree.pth").write_text(f"import site; site.addsitedir({installed!r})\n")
    trap = site_packages / "pip"  # shadows the installed pip: this venv's own site-packages come first
    trap.mkdir()
    (trap / "__init__.py").write_text("")
    (trap / "__main__.py").write_text(PIP_TRAP.format(marker=str(pip_marker)))
    entry = env_dir / "bin" / "relay-shell"
    entry.write_text(ENTRY_POINT.format(python=python))
    entry.chmod(0o755)
    digest = hashlib.sha256(b"".join((root / name).read_bytes() for name in LOCK_FILES)).hexdigest()
    (root / STAMP).write_text(digest + "\n")
    return root


def test_second_serve_answers_initialize_without_pip_or_index(tmp_path: Path) -> None:
    pip_marker = tmp_path / "pip-was-run"
    checkout = make_checkout(tmp_path / "checkout", pip_marker)
    index = f"http://127.0.0.1:{closed_port()}/simple"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PIP_INDEX_URL": index,
        "PIP_EXTRA_INDEX_URL": index,
        "PIP_NO_INDEX": "1",
        "RELAY_SHELL_AUDIT_PATH": str(tmp_path / "audit.jsonl"),
        "RELAY_SHELL_SSH_CONFIG": str(tmp_path / "ssh_config"),
        "RELAY_SHELL_SSH_KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
    }
    proc = subprocess.Popen(
        [str(checkout / "scripts" / "serve")],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(INITIALIZE)
        proc.stdin.flush()
        first = proc.stdout.readline()
        proc.stdin.close()
        code = proc.wait(timeout=30)
        stderr = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first, f"no answer to initialize; stderr:\n{stderr}"
    answer = json.loads(first)
    assert (answer["id"], answer["result"]["serverInfo"]["name"]) == (1, "relay-shell"), stderr
    assert code == 0, stderr
    assert not pip_marker.exists(), f"pip ran: {pip_marker.read_text()}"
    assert "relay-shell setup:" not in stderr  # neither "creating .venv" nor "installing the pinned tree"
    assert " serving stdio " in stderr
    assert (checkout / STAMP).read_text().strip() == hashlib.sha256(
        b"".join((checkout / name).read_bytes() for name in LOCK_FILES)
    ).hexdigest()


def test_pip_trap_catches_an_install(tmp_path: Path) -> None:
    """The trap is live: with a changed lock file, scripts/setup does try to install, and is caught."""
    pip_marker = tmp_path / "pip-was-run"
    checkout = make_checkout(tmp_path / "checkout", pip_marker)
    with (checkout / "requirements.txt").open("a") as lock:
        lock.write("# changed\n")
    proc = subprocess.run(
        [str(checkout / "scripts" / "setup")],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PIP_NO_INDEX": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "installing the pinned tree" in proc.stderr
    assert pip_marker.read_text().split()[1:3] == ["install", "-q"]
