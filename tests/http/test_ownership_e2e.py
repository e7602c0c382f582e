"""Ownership over HTTP with builtin OAuth: the real ``relay-shell`` server, one grant per consent.

Two ``operate`` grants, a ``read`` grant and an ``admin`` grant call one server. A PTY
session and an SSH forward (through a real sshd) opened by the first grant cannot be read,
typed into, resized, killed or closed by the second or by the read grant (``denied``, rule
``owner``, audited with the refused grant as principal), nor listed by them; the admin grant
lists them with their owner and can use and close them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from tests.conftest import read_audit
from tests.http.test_auth_e2e import (
    OPERATOR_HASH,
    bearer_client,
    client_id,  # noqa: F401  (a fixture: registers the one client with this module's server)
    token_for,
)
from tests.http.test_http_e2e import RELAY, RelayProcess, _wait_ready, free_port, server_env
from tests.netutil import round_trip, wait_refused
from tests.sshd import ClientKey, SshdInstance, sshd_available, start_sshd

PROMPT = r"\$ $"
OPERATE = "relay-shell:operate"


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
    for _attempt in range(5):
        port = free_port()
        log_path = state_dir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [RELAY],
                env=server_env(
                    state_dir,
                    RELAY_SHELL_TRANSPORT="http",
                    RELAY_SHELL_HTTP_PORT=str(port),
                    RELAY_SHELL_AUTH_ENABLED="true",
                    RELAY_SHELL_AUTH_ISSUER=f"http://127.0.0.1:{port}",
                    RELAY_SHELL_AUTH_OPERATOR_HASH=OPERATOR_HASH,
                    RELAY_SHELL_SSH_KNOWN_HOSTS="strict",
                ),
                cwd=state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = RelayProcess(process, port, state_dir, log_path)
        if _wait_ready(server):
            yield server
            assert server.stop() == 0
            return
    pytest.fail("no free port for the ownership server")


def sc(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content)


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content[0].text
    return sc(result)


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
