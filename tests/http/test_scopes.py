"""Scopes cap tiers; the principal comes from the SDK's auth context."""

from __future__ import annotations

import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from relay_shell.http.scopes import (
    ALL_SCOPES,
    LOCAL_PRINCIPAL,
    NO_TIER,
    SCOPE_ADMIN,
    SCOPE_OPERATE,
    SCOPE_READ,
    Principal,
    current_principal,
    grantable_scopes,
    principal_or_local,
    tier_ceiling,
)

TIER_CASES: list[tuple[list[str], int]] = [
    ([], NO_TIER),
    (["openid", "profile"], NO_TIER),
    (["relay-shell:Read"], NO_TIER),  # scopes are case-sensitive
    (["relay-shell"], NO_TIER),
    ([SCOPE_READ], 0),
    ([SCOPE_OPERATE], 2),
    ([SCOPE_ADMIN], 3),
    ([SCOPE_READ, SCOPE_OPERATE], 2),
    ([SCOPE_ADMIN, SCOPE_READ], 3),
    ([SCOPE_READ, "offline_access"], 0),
    (list(ALL_SCOPES), 3),
]


@pytest.mark.parametrize(("scopes", "ceiling"), TIER_CASES)
def test_tier_ceiling(scopes: list[str], ceiling: int) -> None:
    assert tier_ceiling(scopes) == ceiling
    assert tier_ceiling(iter(scopes)) == ceiling  # any iterable
    assert Principal(subject=None, client_id=None, scopes=tuple(scopes)).max_tier == ceiling


def test_scope_names() -> None:
    assert ALL_SCOPES == ("relay-shell:read", "relay-shell:operate", "relay-shell:admin")
    assert NO_TIER == -1


def test_no_principal_without_authentication() -> None:
    assert current_principal() is None


@pytest.mark.parametrize(
    ("subject", "client_id", "expected_subject", "expected_client"),
    [("alice", "claude", "alice", "claude"), (None, "", None, None)],
)
def test_principal_from_the_auth_context(
    subject: str | None, client_id: str, expected_subject: str | None, expected_client: str | None
) -> None:
    token = AccessToken(token="t", client_id=client_id, scopes=[SCOPE_READ], subject=subject)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        principal = current_principal()
    finally:
        auth_context_var.reset(reset)
    assert principal == Principal(subject=expected_subject, client_id=expected_client, scopes=(SCOPE_READ,))
    assert principal.max_tier == 0
    assert current_principal() is None


def test_local_principal_stands_in_without_authentication() -> None:
    assert principal_or_local() is LOCAL_PRINCIPAL
    assert LOCAL_PRINCIPAL.subject == "local"
    assert LOCAL_PRINCIPAL.is_admin
    assert LOCAL_PRINCIPAL.max_tier == 3
    token = AccessToken(token="t", client_id="c", scopes=[SCOPE_OPERATE], subject="g-0123456789abcdef")
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        principal = principal_or_local()
    finally:
        auth_context_var.reset(reset)
    assert principal.subject == "g-0123456789abcdef"
    assert not principal.is_admin


@pytest.mark.parametrize(
    ("scopes", "admin"),
    [([SCOPE_ADMIN], True), ([SCOPE_READ, SCOPE_ADMIN], True), ([SCOPE_OPERATE], False), ([], False)],
)
def test_is_admin(scopes: list[str], admin: bool) -> None:
    assert Principal(subject="s", client_id=None, scopes=tuple(scopes)).is_admin is admin


@pytest.mark.parametrize(
    ("asked", "max_scope", "grantable"),
    [
        ([SCOPE_ADMIN, SCOPE_READ], SCOPE_ADMIN, (SCOPE_READ, SCOPE_ADMIN)),
        ([SCOPE_ADMIN, SCOPE_READ], SCOPE_OPERATE, (SCOPE_READ,)),
        (list(ALL_SCOPES), SCOPE_READ, (SCOPE_READ,)),
        ([SCOPE_ADMIN], SCOPE_OPERATE, ()),
        (["openid", SCOPE_OPERATE], SCOPE_ADMIN, (SCOPE_OPERATE,)),
        ([], SCOPE_ADMIN, ()),
    ],
)
def test_grantable_scopes(asked: list[str], max_scope: str, grantable: tuple[str, ...]) -> None:
    assert grantable_scopes(asked, max_scope) == grantable
