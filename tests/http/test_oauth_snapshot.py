"""The state file read for every bearer check: parsed once while unchanged, every change seen at once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

from relay_shell.http.oauth_state import (
    STATE_FILE,
    GrantRecord,
    OAuthState,
    StateStore,
    TokenRecord,
    token_digest,
)
from relay_shell.http.oauth_store import FileOAuthProvider

Change = Callable[[OAuthState], None]


def later_wall_clock() -> int:
    """A real time two seconds ahead: every file written so far counts as settled."""
    return time.time_ns() + 2_000_000_000


def grant(name: str, token: str = "an-access-token") -> Change:
    """A consented grant ``name`` of client ``c`` with a live access token ``token``."""

    def change(state: OAuthState) -> None:
        state.client = OAuthClientInformationFull(
            client_id="c", redirect_uris=[AnyUrl("http://127.0.0.1/cb")]
        )
        state.grants[name] = GrantRecord(client_id="c", scopes=["read"], created_at=1.0, method="passphrase")
        state.access[token_digest(token)] = TokenRecord(
            client_id="c",
            scopes=["read"],
            expires_at=time.time() + 600,
            resource=None,
            subject="operator",
            family=name,
            partner="refresh-digest",
        )

    return change


def revoke(name: str) -> Change:
    def change(state: OAuthState) -> None:
        state.revoke_family(name, via="operator")

    return change


async def test_a_settled_file_is_parsed_once_and_a_replacement_by_another_process_is_seen(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "oauth"
    server = StateStore(state_dir, wall_ns=later_wall_clock)
    await server.update(grant("g1"))
    first = server.snapshot()
    assert set(first.grants) == {"g1"}
    assert server.snapshot() is first  # unchanged file: not parsed again

    admin = StateStore(state_dir)  # what --revoke in another process opens
    await admin.update(revoke("g1"))
    after = server.snapshot()
    assert after is not first
    assert "g1" not in after.grants
    assert set(after.revoked) == {"g1"}
    assert server.snapshot() is after


async def test_a_file_changed_within_the_settling_time_is_read_every_time(tmp_path: Path) -> None:
    state_dir = tmp_path / "oauth"
    store = StateStore(state_dir)  # the real clock: the file was just written
    await store.update(grant("g1"))
    first = store.snapshot()
    second = store.snapshot()
    assert second is not first
    assert set(second.grants) == {"g1"}

    # An edit in place (same inode, possibly the same timestamps and size) is seen at once.
    path = state_dir / STATE_FILE
    inode = path.stat().st_ino
    edited = path.read_text().replace('"g1"', '"g2"')  # the grant and its token's family
    with path.open("r+") as handle:
        handle.write(edited)
    assert path.stat().st_ino == inode
    assert set(store.snapshot().grants) == {"g2"}
    assert [record.family for record in store.snapshot().access.values()] == ["g2"]


async def test_a_missing_or_removed_file_is_an_empty_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "oauth"
    store = StateStore(state_dir, wall_ns=later_wall_clock)
    assert store.snapshot() == OAuthState()
    await store.update(grant("g1"))
    assert set(store.snapshot().grants) == {"g1"}
    os.unlink(state_dir / STATE_FILE)
    assert store.snapshot() == OAuthState()


async def test_access_token_refused_once_another_process_revokes_its_grant(tmp_path: Path) -> None:
    """The bearer check keeps no answer: a token revoked by an admin command fails on its next use."""
    state_dir = tmp_path / "oauth"
    provider = FileOAuthProvider(
        state_dir, issuer="https://relay.example", access_ttl=600, refresh_ttl=600, code_ttl=60
    )
    token = "an-access-token"

    await provider.store.update(grant("g1", token))
    for _ in range(3):
        loaded = await provider.load_access_token(token)
        assert loaded is not None and loaded.client_id == "c"
    await StateStore(state_dir).update(revoke("g1"))
    assert await provider.load_access_token(token) is None
    assert await provider.load_access_token("another-token") is None
