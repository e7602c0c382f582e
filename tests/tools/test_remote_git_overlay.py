"""A tier-0 ``git`` on a remote host runs with code-running configuration off, as a local one does.

The classifier reads ``git status`` as a known-safe read (tier 0, admitted in ``readonly``)
only because the executor neutralises the repository's configuration that runs code
(``core.fsmonitor``, hooks, pagers, external diff). Remotely that overlay is exported by the
remote ``/bin/sh`` before the command (``with_environment``): a repository on the host whose
``core.fsmonitor`` would create a file creates nothing, through ``ssh_exec`` and ``ssh_fanout``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, sc
from tests.sshd import TEST_USER, ClientKey, SshdInstance
from tests.tools.test_policy_e2e import repo_with_fsmonitor

pytestmark = pytest.mark.usefixtures("sshd_installed", "git_installed")


@pytest.fixture
def remote_repo() -> Iterator[Path]:
    """A repository owned by the remote user whose ``core.fsmonitor`` touches ``hook-ran``."""
    root = Path(tempfile.mkdtemp(prefix="relay-remote-git-"))
    repo = repo_with_fsmonitor(root)
    user = pwd.getpwnam(TEST_USER)
    for directory, _, files in os.walk(root):
        os.chown(directory, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid)
    root.chmod(0o755)
    yield repo
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def remote_server(
    make_settings: Callable[..., Settings], tmp_path: Path, key: ClientKey, host: SshdInstance
) -> Callable[..., RelayServer]:
    def build(**overrides: Any) -> RelayServer:
        inventory = tmp_path / "inventory.json"
        entry = {"hostname": host.address, "port": host.port, "user": host.user}
        inventory.write_text(json.dumps({"box": {**entry, "identity_file": str(key.private_path)}}))
        return build_server(make_settings(inventory=inventory, **overrides))

    return build


async def test_the_hook_runs_without_the_overlay(
    remote_server: Callable[..., RelayServer], remote_repo: Path
) -> None:
    """Control: the same git, in a tier-1 call (no overlay), runs the repository's fsmonitor."""
    server = remote_server()
    async with connected(server) as client:
        result = await client.call_tool(
            "ssh_exec", {"host": "box", "command": f"sleep 0; git -C {remote_repo} status"}
        )
    await server.services.aclose()
    assert (result.is_error, sc(result)["tier"]) == (False, 1)
    assert (remote_repo.parent / "hook-ran").exists()


async def test_readonly_remote_git_status_runs_no_repository_code(
    remote_server: Callable[..., RelayServer], remote_repo: Path
) -> None:
    server = remote_server(policy_mode="readonly")
    async with connected(server) as client:
        single = await client.call_tool(
            "ssh_exec", {"host": "box", "command": f"git -C {remote_repo} status"}
        )
        fanned = await client.call_tool(
            "ssh_fanout", {"hosts": "box", "command": f"cd {remote_repo} && git status"}
        )
    await server.services.aclose()
    assert (single.is_error, sc(single)["tier"], sc(single)["exit_code"]) == (False, 0, 0), single.content
    assert "file" in sc(single)["stdout"], sc(single)
    assert (fanned.is_error, sc(fanned)["tier"]) == (False, 0), fanned.content
    assert [row["status"] for row in sc(fanned)["results"]] == ["ok"]
    assert not (remote_repo.parent / "hook-ran").exists()
