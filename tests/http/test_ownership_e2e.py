"""Ownership over HTTP with builtin OAuth: the real ``relay-shell`` server, one grant per consent.

Two ``operate`` grants, a ``read`` grant and an ``admin`` grant call one server. A PTY
session and an SSH forward (through a real sshd) opened by the first grant cannot be read,
typed into, resized, killed or closed by the second or by the read grant (``denied``, rule
``owner``, audited with the refused grant as principal), nor listed by them; the admin grant
lists them with their owner and can use and close them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.conftest import ok, read_audit, sc
from tests.http.test_auth_e2e import (
    OPERATOR_HASH,
    bearer_client,
    client_id,  # noqa: F401  (a fixture: registers the one client with this module's server)
    token_for,
)
from tests.http.test_http_e2e import RELAY, RelayProcess, running_relay, server_env
from tests.netutil import round_trip, wait_refused
from tests.sshd import ClientKey, SshdInstance, sshd_available, start_sshd

PROMPT = r"\$ $"
OPERATE = "relay-shell:operate"
RELAY_ENV = {
    "RELAY_SHELL_AUTH_ENABLED": "true",
    "RELAY_SHELL_AUTH_ISSUER": "http://127.0.0.1:{port}",
    "RELAY_SHELL_AUTH_OPERATOR_HASH": OPERATOR_HASH,
}


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdInstance]:
    if not sshd_available():
        pytest.skip("SKIPPED: /usr/sbin/sshd is not installed (apt-get install -y openssh-server)")
    instance = start_sshd(ClientKey.create())
    yield instance
    instance.remove()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, sshd: SshdInstance) -> Iterator[RelayProcess]:
    """The server with builtin OAuth, trusting the test sshd's host key (strict checking)."""
    state_dir = tmp_path_factory.mktemp("relay-ownership")
    (state_dir / "known_hosts").write_text(sshd.known_hosts_line())
    with running_relay(state_dir, **RELAY_ENV, RELAY_SHELL_SSH_KNOWN_HOSTS="strict") as server:
        yield server


def refused_as_not_owner(result: Any, object_id: str) -> None:
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["rule"]) == ("denied", "owner")
    assert error["message"] == (
        f"refused: {object_id} belongs to another principal; only its owner or an admin may use it"
    )


async def whoami(client: Client) -> str:
    """The caller's principal, as the server records it: the owner of a session it opens."""
    started = ok(await client.call_tool("shell_spawn", {"env": {"PS1": "$ "}}))
    ok(await client.call_tool("session_kill", {"session_id": started["session_id"]}))
    assert started["owner"].startswith("g-")
    return str(started["owner"])


async def test_grants_own_their_sessions_and_forwards(
    relay: RelayProcess,
    client_id: str,  # noqa: F811
    sshd: SshdInstance,
    echo_port: int,
) -> None:
    tokens = {name: token_for(relay, client_id, scope) for name, scope in (
        ("alice", OPERATE), ("bob", OPERATE), ("reader", "relay-shell:read"), ("admin", "relay-shell:admin"),
    )}  # fmt: skip
    target = {"host": sshd.target(), "key_path": str(sshd.client_key.private_path)}
    async with (
        bearer_client(relay, tokens["alice"]["access_token"]) as alice,
        bearer_client(relay, tokens["bob"]["access_token"]) as bob,
        bearer_client(relay, tokens["reader"]["access_token"]) as reader,
        bearer_client(relay, tokens["admin"]["access_token"]) as admin,
    ):
        bob_grant = await whoami(bob)
        started = ok(await alice.call_tool("shell_spawn", {"env": {"PS1": "$ "}}))
        sid, alice_grant = started["session_id"], started["owner"]
        assert alice_grant.startswith("g-") and alice_grant != bob_grant  # two consents, two principals
        assert ok(await alice.call_tool("session_recv", {"session_id": sid, "until": PROMPT, "timeout": 10}))[
            "matched"
        ]
        forward = ok(await alice.call_tool("ssh_forward", {**target, "spec": f"L:0:127.0.0.1:{echo_port}"}))
        fid = forward["forward_id"]
        assert forward["owner"] == alice_grant

        # The other operate grant: every verb on alice's session and forward is refused.
        for tool, extra in (
            ("session_recv", {"timeout": 0}),
            ("session_send", {"data": "echo intruder"}),
            ("session_resize", {"cols": 80, "rows": 24}),
            ("session_kill", {}),
        ):
            refused_as_not_owner(await bob.call_tool(tool, {"session_id": sid, **extra}), f"session {sid}")
        refused_as_not_owner(await bob.call_tool("ssh_forward_close", {"forward_id": fid}), f"forward {fid}")
        assert ok(await bob.call_tool("session_list", {}))["sessions"] == []
        assert ok(await bob.call_tool("ssh_forward_list", {}))["forwards"] == []

        # A read grant may call session_recv and the lists at all, but not on alice's work.
        refused_as_not_owner(await reader.call_tool("session_recv", {"session_id": sid}), f"session {sid}")
        assert ok(await reader.call_tool("session_list", {}))["count"] == 0
        assert ok(await reader.call_tool("ssh_forward_list", {}))["count"] == 0

        # Nothing reached alice's shell or forward; the owner still lists and uses both.
        assert (
            "intruder"
            not in ok(await alice.call_tool("session_recv", {"session_id": sid, "timeout": 0.2}))["output"]
        )
        assert [row["session_id"] for row in ok(await alice.call_tool("session_list", {}))["sessions"]] == [
            sid
        ]
        assert await round_trip(forward["listen_port"], b"still forwarding") == b"still forwarding"

        # The admin grant sees both, with their owner, and acts on them.
        sessions = ok(await admin.call_tool("session_list", {}))["sessions"]
        assert [(row["session_id"], row["owner"]) for row in sessions] == [(sid, alice_grant)]
        forwards = ok(await admin.call_tool("ssh_forward_list", {}))["forwards"]
        assert [(row["forward_id"], row["owner"]) for row in forwards] == [(fid, alice_grant)]
        ok(await admin.call_tool("session_send", {"session_id": sid, "data": "echo admin-was-here"}))
        seen = ok(
            await admin.call_tool(
                "session_recv", {"session_id": sid, "until": "^admin-was-here", "timeout": 10}
            )
        )
        assert seen["matched"] is True
        killed = ok(await admin.call_tool("session_kill", {"session_id": sid}))
        assert (killed["session_id"], killed["state"]) == (sid, "ended")
        assert ok(await admin.call_tool("ssh_forward_close", {"forward_id": fid}))["state"] == "closed"
        assert await wait_refused(forward["listen_port"])
        assert ok(await alice.call_tool("session_list", {}))["count"] == 0

    reader_grant = next(
        r["principal"]
        for r in read_audit(relay.audit_path)
        if r["tool"] == "session_recv" and r["principal"] not in (alice_grant, bob_grant)
    )
    denied = [
        (r["tool"], r["principal"], r["rule"], r.get("client_id"))
        for r in read_audit(relay.audit_path)
        if r.get("decision") == "denied"
    ]
    assert sorted(denied) == sorted(
        [(tool, bob_grant, "owner", client_id) for tool in ("session_recv", "session_send", "session_resize")]
        + [
            ("session_kill", bob_grant, "owner", client_id),
            ("ssh_forward_close", bob_grant, "owner", client_id),
        ]
        + [("session_recv", reader_grant, "owner", client_id)]
    )
    ends = [r for r in read_audit(relay.audit_path) if r["tool"] == "session_end" and r["session_id"] == sid]
    assert [(r["principal"], r["reason"]) for r in ends] == [(alice_grant, "killed")]


# --- a revoked grant ---------------------------------------------------------------------------------

SESSION_MARK = "31337.25"  # sleep durations nothing else on the machine uses: their processes are ours
JOB_MARK = "31338.25"
WAIT_S = 30.0


def processes_running(mark: str) -> list[int]:
    """Pids whose command line is ``sleep <mark>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", mark.encode()]:
                    found.append(int(entry.name))
    return found


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, within a bounded deadline."""
    try:
        async with asyncio.timeout(WAIT_S):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"no {what} within {WAIT_S} s")


def operator_cli(relay: RelayProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    """``relay-shell`` run by the operator beside the server, on the same state and audit file."""
    env = server_env(
        relay.state_dir,
        **{name: value.replace("{port}", str(relay.port)) for name, value in RELAY_ENV.items()},
    )
    return subprocess.run(
        [RELAY, *argv], env=env, cwd=relay.state_dir, capture_output=True, text=True, timeout=60
    )


async def test_revoking_a_grant_ends_what_it_left_running(
    relay: RelayProcess,
    client_id: str,  # noqa: F811
    sshd: SshdInstance,
    echo_port: int,
) -> None:
    """The operator revokes a grant: its tokens stop working, and the server kills its session
    and its running job and closes its forward, audited with the operator's revocation as
    actor; until then the admin sees them; the admin keeps the ended job readable."""
    carol_token = token_for(relay, client_id, OPERATE)
    admin_token = token_for(relay, client_id, "relay-shell:admin")
    target = {"host": sshd.target(), "key_path": str(sshd.client_key.private_path)}
    async with (
        bearer_client(relay, carol_token["access_token"]) as carol,
        bearer_client(relay, admin_token["access_token"]) as admin,
    ):
        session = ok(await carol.call_tool("shell_spawn", {"command": f"sleep {SESSION_MARK}"}))
        job = ok(await carol.call_tool("shell_exec", {"command": f"sleep {JOB_MARK}", "yield_after": 0.2}))
        forward = ok(await carol.call_tool("ssh_forward", {**target, "spec": f"L:0:127.0.0.1:{echo_port}"}))
        grant = session["owner"]
        sid, jid, fid = session["session_id"], job["job_id"], forward["forward_id"]
        assert processes_running(SESSION_MARK) and processes_running(JOB_MARK)
        rows = ok(await admin.call_tool("session_list", {}))["sessions"]
        mine = {(row["session_id"], row["kind"], row["owner"], row["state"]) for row in rows}
        assert mine >= {(sid, "local", grant, "running"), (jid, "job", grant, "running")}

        revoked = operator_cli(relay, "--revoke-grant", grant)
        assert revoked.returncode == 0, revoked.stderr

        async def all_ended() -> bool:
            return not processes_running(SESSION_MARK) and not processes_running(JOB_MARK)

        await until(all_ended, "end of the revoked grant's processes")
        assert await wait_refused(forward["listen_port"])
        rows = ok(await admin.call_tool("session_list", {}))["sessions"]
        after = {row["session_id"]: (row["owner"], row["state"], row["outcome"]) for row in rows}
        assert sid not in after  # closed
        assert after[jid] == (grant, "ended", "cancelled")  # stays readable by an admin until read
        assert fid not in {
            row["forward_id"] for row in ok(await admin.call_tool("ssh_forward_list", {}))["forwards"]
        }

    with relay.http() as http:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        bearer = {"Authorization": f"Bearer {carol_token['access_token']}"}
        assert http.post("/mcp", json=ping, headers=bearer).status_code == 401
    records = read_audit(relay.audit_path)
    (ended,) = [r for r in records if r["tool"] == "principal_end" and r["principal"] == grant]
    assert (ended["actor"], ended["sessions"], ended["jobs"], ended["forwards"]) == (
        "oauth_revoke:operator",
        [sid],
        [jid],
        [fid],
    )
    session_end = [r for r in records if r["tool"] == "session_end" and r["session_id"] == sid]
    assert [(r["principal"], r["reason"]) for r in session_end] == [(grant, "killed")]
    job_end = [r for r in records if r["tool"] == "job_end" and r.get("job_id") == jid]
    assert [r["outcome"] for r in job_end] == ["cancelled"]
