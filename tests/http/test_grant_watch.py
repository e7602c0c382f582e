"""A revoked grant's work ends: the state file remembers why each grant was revoked, and the
server's watch ends what a revoked grant owns, and nothing of anyone else's.

In process: real PTY sessions opened by two principals (the SDK's auth context), a real
state file; the watch is checked directly (the real server runs it every second: the
end-to-end test is in ``test_ownership_e2e.py``).
"""

from __future__ import annotations

from pathlib import Path

from relay_shell.app import RelayServer
from relay_shell.config import Settings
from relay_shell.http.grant_watch import GrantWatch
from relay_shell.http.oauth_state import MAX_REVOKED, GrantRecord, OAuthState, StateStore
from tests.conftest import connected, principal, read_audit

OPERATE = "relay-shell:operate"


def grant(state: OAuthState, grant_id: str) -> None:
    state.grants[grant_id] = GrantRecord(client_id="c", scopes=[OPERATE], created_at=0.0, method="passphrase")


def test_revoking_a_grant_remembers_why_and_only_the_newest() -> None:
    state = OAuthState()
    assert state.revoke_family("g-unknown", via="operator") == 0
    assert state.revoked == {}  # nothing was revoked: nothing to remember
    for number in range(MAX_REVOKED + 2):
        grant(state, f"g-{number}")
        state.revoke_family(f"g-{number}", via="replay" if number % 2 else "operator")
    assert len(state.revoked) == MAX_REVOKED
    assert "g-0" not in state.revoked and "g-1" not in state.revoked
    newest = f"g-{MAX_REVOKED + 1}"
    assert state.revoked[newest].via == "replay"
    assert max(state.revoked.values(), key=lambda record: record.serial) == state.revoked[newest]
    assert newest not in state.grants


async def test_the_watch_ends_only_the_revoked_grants_work(
    server: RelayServer, settings: Settings, tmp_path: Path
) -> None:
    store = StateStore(tmp_path / "oauth")
    watch = GrantWatch(store, server.services)
    sessions: dict[str, str] = {}
    for owner in ("g-revoked", "g-kept"):
        with principal(owner, OPERATE):
            async with connected(server) as client:
                started = await client.call_tool("shell_spawn", {"command": "sleep 600"})
                assert started.structured_content is not None
                sessions[owner] = started.structured_content["session_id"]
    assert await watch.check() == []  # nothing revoked yet: nothing ends

    def revoke(state: OAuthState) -> None:
        grant(state, "g-revoked")
        state.revoke_family("g-revoked", via="operator")

    await store.update(revoke)
    assert await watch.check() == ["g-revoked"]
    assert [info.session_id for info in server.services.sessions.list()] == [sessions["g-kept"]]
    assert await watch.check() == []  # done once: nothing of the revoked grant is left
    ended = [r for r in read_audit(settings.audit_path) if r["tool"] == "principal_end"]
    assert [(r["principal"], r["actor"], r["sessions"], r["jobs"], r["forwards"]) for r in ended] == [
        ("g-revoked", "oauth_revoke:operator", [sessions["g-revoked"]], [], [])
    ]
