"""Remote text through the MCP client: ssh_exec rewrites are refused in guarded mode and do nothing.

The remote host is a real sshd on loopback whose user owns the proofs, so each rewrite would
take effect if it ran (the open-mode control shows it does).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_shell.app import RelayServer
from tests.conftest import connected, sc
from tests.sshd import TEST_USER
from tests.tools.test_remote_git_overlay import remote_server

__all__ = ["remote_server"]  # the git overlay tests' server fixture (key and host: tests/tools/conftest.py)

pytestmark = pytest.mark.usefixtures("sshd_installed")  # a missing sshd fails, naming it

# One tier-3 and one tier-2 rewrite per class, as the remote /bin/sh would read them;
# {d} is a directory the remote user owns, {f} a 0644 file of theirs.
REMOTE_REWRITES = [
    ("quoting", "r''m -rf {d}", "ch\\mod 600 {f}"),
    ("glob", "/bin/r[m] -rf {d}", "/bin/ch?od 600 {f}"),
    ("expansion", "$EMPTY rm -rf {d}", "$(true) chmod 600 {f}"),
    ("wrapper", "nohup nice timeout 30 rm -rf {d}", "env X=1 chmod 600 {f}"),
    ("nested shell", "sh -c 'rm -rf {d}'", "bash -c 'chmod 600 {f}'"),
    ("pipe into shell", "echo 'rm -rf {d}' | sh", "printf 'chmod 600 {f}' | sh"),
]


@pytest.fixture
def owned() -> Iterator[tuple[Path, Path]]:
    """A directory and a 0644 file owned by the remote user."""
    root = Path(tempfile.mkdtemp(prefix="relay-remote-policy-"))
    victim = root / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    target = root / "mode-target"
    target.write_text("x")
    target.chmod(0o644)
    user = pwd.getpwnam(TEST_USER)
    for path in (root, victim, victim / "keep", target):
        os.chown(path, user.pw_uid, user.pw_gid)
    root.chmod(0o755)
    yield victim, target
    shutil.rmtree(root, ignore_errors=True)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("group", "tier3", "tier2"), REMOTE_REWRITES, ids=[r[0] for r in REMOTE_REWRITES])
async def test_remote_rewrites_are_refused_in_guarded_mode(
    remote_server: Callable[..., RelayServer], owned: tuple[Path, Path], group: str, tier3: str, tier2: str
) -> None:
    victim, target = owned
    server = remote_server(policy_mode="guarded")
    results: list[Any] = []
    async with connected(server) as client:
        for command in (tier3.format(d=victim, f=target), tier2.format(d=victim, f=target)):
            results.append(await client.call_tool("ssh_exec", {"host": "box", "command": command}))
    await server.services.aclose()
    for result in results:
        error = sc(result)["error"]
        assert (error["kind"], error["mode"]) == ("denied", "guarded"), result.content[0].text
        assert error["subcommand"] and error["rule"]
    assert (victim / "keep").exists()
    assert mode_of(target) == 0o644


async def test_the_remote_rewrites_take_effect_in_open_mode(
    remote_server: Callable[..., RelayServer], owned: tuple[Path, Path]
) -> None:
    """Control: the proofs change when a rewrite runs."""
    victim, target = owned
    server = remote_server()
    async with connected(server) as client:
        for command in (f"r''m -rf {victim}", f"ch\\mod 600 {target}"):
            result = await client.call_tool("ssh_exec", {"host": "box", "command": command})
            assert result.is_error is False, result.content[0].text
    await server.services.aclose()
    assert not victim.exists()
    assert mode_of(target) == 0o600
