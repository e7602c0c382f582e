"""PTY sessions and SSH forwards belong to the principal that opened them.

Two or more principals (the SDK's auth context, as the bearer middleware sets it) call one
in-process server: a non-owner's reads, keystrokes, resizes, kills and closes are refused as
``denied`` with rule ``owner`` (and audited), before anything of the object is read or typed
into; the lists show a caller only its own; an admin sees and acts on all. Real PTYs, a real
sshd, audit records read back from the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.components import require_sshd
from tests.conftest import connected, read_audit
from tests.netutil import round_trip, wait_refused
from tests.sshd import ClientKey, SshdInstance, start_sshd
from tests.tools.test_jobs import principal

OPERATE = "relay-shell:operate"
READ = "relay-shell:read"
ADMIN = "relay-shell:admin"
PROMPT = r"\$ $"
SESSION_VERBS: list[tuple[str, dict[str, Any]]] = [
    ("session_recv", {"timeout": 0}),
    ("session_send", {"data": "echo intruder"}),
    ("session_resize", {"cols": 100, "rows": 30}),
    ("session_kill", {"signal": "INT", "close": False}),
    ("session_kill", {}),
]


def sc(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content)


def ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, result.content[0].text
    return sc(result)


def assert_owner_denial(result: Any, object_id: str) -> None:
    """Refused as jobs refuse it: ``denied``, rule ``owner``; nothing of the object shown."""
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["rule"], error["reason"]) == ("denied", "owner", "owner")
    assert error["message"] == (
        f"refused: {object_id} belongs to another principal; only its owner or an admin may use it"
    )


def denials(settings: Settings) -> set[tuple[str, str, str]]:
    return {
        (r["tool"], r["principal"], r["rule"])
        for r in read_audit(settings.audit_path)
        if r.get("decision") == "denied"
    }


async def spawn(client: Client, command: str = "") -> dict[str, Any]:
    """A shell at its prompt (the default one: what is typed into it is classified, not opaque)."""
    started = ok(await client.call_tool("shell_spawn", {"command": command, "env": {"PS1": "$ "}}))
    data = ok(
        await client.call_tool(
            "session_recv", {"session_id": started["session_id"], "until": PROMPT, "timeout": 10}
        )
    )
    assert data["matched"] is True
    return started


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RelayServer]:
    srv = build_server(settings)
    await srv.services.start()
    try:
        yield srv
    finally:
        await srv.services.aclose()


async def test_a_session_belongs_to_the_principal_that_opened_it(
    server: RelayServer, settings: Settings
) -> None:
    with principal("alice", OPERATE):
        async with connected(server) as alice:
            mine = await spawn(alice, "bash --norc -i # alice-secret-marker")
            sid = mine["session_id"]
            assert mine["owner"] == "alice"
            with principal("bob", OPERATE):
                async with connected(server) as bob:
                    for tool, extra in SESSION_VERBS:
                        assert_owner_denial(
                            await bob.call_tool(tool, {"session_id": sid, **extra}), f"session {sid}"
                        )
                    listed = ok(await bob.call_tool("session_list", {}))
                    assert (listed["count"], listed["sessions"]) == (0, [])
                    unknown = sc(await bob.call_tool("session_recv", {"session_id": "sh-000000000000"}))
                    # as for jobs: an unknown id is invalid, not a denial
                    assert (unknown["error"]["kind"], unknown["error"]["argument"]) == (
                        "invalid",
                        "session_id",
                    )
            # Nothing bob did reached the shell: still running, the same size, nothing typed.
            after = ok(await alice.call_tool("session_recv", {"session_id": sid, "timeout": 0.2}))
            assert "intruder" not in after["output"]
            assert after["ended"] is False
            row = ok(await alice.call_tool("session_list", {}))["sessions"]
            assert [(r["session_id"], r["owner"], r["cols"], r["state"]) for r in row] == [
                (sid, "alice", 120, "running")
            ]
    assert denials(settings) == {(tool, "bob", "owner") for tool, _ in SESSION_VERBS}


async def test_the_refusal_comes_before_classification_and_confirmation(
    server: RelayServer, settings: Settings
) -> None:
    """A tier-3 line typed into another's session is refused as not its own, never asked about:
    the question (which would name the session's command) is never built."""
    with principal("alice", OPERATE):
        async with connected(server) as alice:
            sid = (await spawn(alice, "bash --norc -i # alice-secret-marker"))["session_id"]
            with principal("mallory", OPERATE):
                async with connected(server) as mallory:
                    refused = await mallory.call_tool(
                        "session_send", {"session_id": sid, "data": "rm -rf --no-preserve-root /"}
                    )
            assert_owner_denial(refused, f"session {sid}")
            assert "alice-secret-marker" not in refused.content[0].text
            assert sc(refused)["tier"] is None  # refused before it was classified
            ok(await alice.call_tool("session_kill", {"session_id": sid}))
    record = next(r for r in read_audit(settings.audit_path) if r.get("principal") == "mallory")
    assert (record["tool"], record["decision"], record["rule"]) == ("session_send", "denied", "owner")


async def test_a_read_scope_principal_cannot_read_another_session(
    server: RelayServer, settings: Settings
) -> None:
    with principal("alice", OPERATE):
        async with connected(server) as alice:
            sid = (await spawn(alice))["session_id"]
            ok(await alice.call_tool("session_send", {"session_id": sid, "data": "echo for-alice-only"}))
            with principal("reader", READ):
                async with connected(server) as reader:
                    assert_owner_denial(
                        await reader.call_tool("session_recv", {"session_id": sid}), f"session {sid}"
                    )
                    assert ok(await reader.call_tool("session_list", {}))["count"] == 0
            seen = ok(
                await alice.call_tool(
                    "session_recv", {"session_id": sid, "until": "^for-alice-only", "timeout": 10}
                )
            )
            assert seen["matched"] is True  # the refused read consumed nothing
    assert ("session_recv", "reader", "owner") in denials(settings)


async def test_an_admin_sees_and_acts_on_every_session(server: RelayServer, settings: Settings) -> None:
    with principal("alice", OPERATE):
        async with connected(server) as alice:
            sid = (await spawn(alice))["session_id"]
    with principal("bob", OPERATE):
        async with connected(server) as bob:
            bobs = (await spawn(bob))["session_id"]
            assert [r["session_id"] for r in ok(await bob.call_tool("session_list", {}))["sessions"]] == [
                bobs
            ]
    with principal("root", ADMIN):
        async with connected(server) as admin:
            listed = ok(await admin.call_tool("session_list", {}))
            assert {(r["session_id"], r["owner"]) for r in listed["sessions"]} == {
                (sid, "alice"),
                (bobs, "bob"),
            }
            assert f"{sid} local running" in listed_text(await admin.call_tool("session_list", {}), sid)
            ok(await admin.call_tool("session_send", {"session_id": sid, "data": "echo from-admin"}))
            seen = ok(
                await admin.call_tool(
                    "session_recv", {"session_id": sid, "until": "^from-admin", "timeout": 10}
                )
            )
            assert seen["matched"] is True
            resized = ok(await admin.call_tool("session_resize", {"session_id": sid, "cols": 90, "rows": 20}))
            assert (resized["session_id"], resized["cols"]) == (sid, 90)
            listed = ok(await admin.call_tool("session_list", {}))
            assert [(r["owner"], r["cols"]) for r in listed["sessions"] if r["session_id"] == sid] == [
                ("alice", 90)
            ]
            closed = ok(await admin.call_tool("session_kill", {"session_id": sid}))
            assert (closed["session_id"], closed["state"]) == (sid, "ended")
            ok(await admin.call_tool("session_kill", {"session_id": bobs}))
    assert not [r for r in read_audit(settings.audit_path) if r.get("decision") == "denied"]
    ends = [r for r in read_audit(settings.audit_path) if r["tool"] == "session_end"]
    assert {(r["session_id"], r["principal"]) for r in ends} == {(sid, "alice"), (bobs, "bob")}


def listed_text(result: Any, session_id: str) -> str:
    """The line of ``session_id`` in a session_list's text; it names the owner."""
    line = next(line for line in result.content[0].text.splitlines() if line.startswith(session_id))
    assert " owner " in line
    return line


async def test_without_oauth_there_is_one_principal(server: RelayServer) -> None:
    """stdio and HTTP without OAuth: one local principal that owns everything (owner null)."""
    async with connected(server) as first:
        sid = (await spawn(first))["session_id"]
    async with connected(server) as second:
        listed = ok(await second.call_tool("session_list", {}))
        assert [(r["session_id"], r["owner"]) for r in listed["sessions"]] == [(sid, None)]
        ok(await second.call_tool("session_kill", {"session_id": sid}))
        assert ok(await second.call_tool("session_list", {}))["count"] == 0


# --- SSH sessions and forwards ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshdInstance]:
    require_sshd()
    instance = start_sshd(ClientKey.create())
    yield instance
    instance.remove()


@pytest.fixture
def ssh_settings(make_settings: Callable[..., Settings], sshd: SshdInstance) -> Settings:
    settings = make_settings(ssh_known_hosts="strict")
    settings.ssh_known_hosts_file.write_text(sshd.known_hosts_line())
    return settings


@pytest.fixture
async def ssh_server(ssh_settings: Settings) -> AsyncIterator[RelayServer]:
    srv = build_server(ssh_settings)
    await srv.services.start()
    try:
        yield srv
    finally:
        await srv.services.aclose()


def target(sshd: SshdInstance, **extra: Any) -> dict[str, Any]:
    return {"host": sshd.target(), "key_path": str(sshd.client_key.private_path), **extra}


async def test_ssh_sessions_and_forwards_belong_to_their_principal(
    ssh_server: RelayServer, ssh_settings: Settings, sshd: SshdInstance, echo_port: int
) -> None:
    with principal("alice", OPERATE):
        async with connected(ssh_server) as alice:
            remote = ok(await alice.call_tool("ssh_spawn", target(sshd)))
            sid = remote["session_id"]
            assert (remote["kind"], remote["owner"]) == ("ssh", "alice")
            forward = ok(
                await alice.call_tool("ssh_forward", target(sshd, spec=f"L:0:127.0.0.1:{echo_port}"))
            )
            fid = forward["forward_id"]
            assert forward["owner"] == "alice"
            with principal("bob", OPERATE):
                async with connected(ssh_server) as bob:
                    for tool, extra in SESSION_VERBS:
                        assert_owner_denial(
                            await bob.call_tool(tool, {"session_id": sid, **extra}), f"session {sid}"
                        )
                    assert_owner_denial(
                        await bob.call_tool("ssh_forward_close", {"forward_id": fid}), f"forward {fid}"
                    )
                    assert ok(await bob.call_tool("ssh_forward_list", {}))["count"] == 0
                    assert ok(await bob.call_tool("session_list", {}))["count"] == 0
                    gone = sc(await bob.call_tool("ssh_forward_close", {"forward_id": "fwd-000000000000"}))
                    assert (gone["error"]["kind"], gone["error"]["argument"]) == ("invalid", "forward_id")
            assert await round_trip(forward["listen_port"], b"still open") == b"still open"
            listed = ok(await alice.call_tool("ssh_forward_list", {}))
            assert [(r["forward_id"], r["owner"]) for r in listed["forwards"]] == [(fid, "alice")]
    with principal("root", ADMIN):
        async with connected(ssh_server) as admin:
            listed = ok(await admin.call_tool("ssh_forward_list", {}))
            assert [(r["forward_id"], r["owner"]) for r in listed["forwards"]] == [(fid, "alice")]
            assert "owner alice" in (await admin.call_tool("ssh_forward_list", {})).content[0].text
            assert ok(await admin.call_tool("ssh_forward_close", {"forward_id": fid}))["state"] == "closed"
            assert await wait_refused(forward["listen_port"])
            ok(await admin.call_tool("session_kill", {"session_id": sid}))
    expected = {(tool, "bob", "owner") for tool, _ in SESSION_VERBS} | {("ssh_forward_close", "bob", "owner")}
    assert denials(ssh_settings) == expected
