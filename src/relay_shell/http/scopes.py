"""OAuth scopes and the principal behind a request.

A token's scopes cap the policy tier a call may reach, on top of the policy mode:

    scope                  highest tier allowed
    relay-shell:read       0  (read-only diagnostics)
    relay-shell:operate    2  (everything but tier 3)
    relay-shell:admin      3  (all tiers)
    none of the above     -1  (nothing: every call is refused)

When a token carries several, the highest wins. Unknown scope strings are ignored.

:func:`grantable_scopes` is what a consent may grant: the scopes asked, never wider than the
server's ``RELAY_SHELL_AUTH_MAX_SCOPE`` (scopes are ranked read < operate < admin).

Principals. Who a request acts for, used in the audit trail and to tell callers apart:

- builtin OAuth: a **grant**, the family of tokens issued from one operator consent; its
  subject is the grant id (``g-`` and 16 hex digits), the same across refreshes and
  different for every consent, so two logins are two principals even from one client;
- JWT mode: the token's ``sub`` (the verifier refuses a token without one);
- stdio, and HTTP without OAuth: one principal, :data:`LOCAL_PRINCIPAL` (the local user,
  admin, no scope ceiling).

:func:`current_principal` reads the principal the SDK's bearer middleware stored for the
current request (``mcp.server.auth.middleware.auth_context``); it is ``None`` when the
request was not authenticated. :func:`principal_or_local` turns that ``None`` into
:data:`LOCAL_PRINCIPAL` for code that needs an owner for everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token

SCOPE_READ = "relay-shell:read"
SCOPE_OPERATE = "relay-shell:operate"
SCOPE_ADMIN = "relay-shell:admin"
ALL_SCOPES: tuple[str, ...] = (SCOPE_READ, SCOPE_OPERATE, SCOPE_ADMIN)

NO_TIER = -1
"""The ceiling of a token with none of our scopes: no tier, so no call is allowed."""

SCOPE_TIERS: dict[str, int] = {SCOPE_READ: 0, SCOPE_OPERATE: 2, SCOPE_ADMIN: 3}
LOCAL_SUBJECT = "local"


def tier_ceiling(scopes: Iterable[str]) -> int:
    """The highest policy tier ``scopes`` allow: 0, 2 or 3, or :data:`NO_TIER` (-1) for none."""
    return max((SCOPE_TIERS[scope] for scope in scopes if scope in SCOPE_TIERS), default=NO_TIER)


def grantable_scopes(asked: Iterable[str], max_scope: str) -> tuple[str, ...]:
    """The relay-shell scopes among ``asked`` that do not exceed ``max_scope``, narrowest first."""
    ceiling = SCOPE_TIERS[max_scope]
    wanted = set(asked)
    return tuple(scope for scope in ALL_SCOPES if scope in wanted and SCOPE_TIERS[scope] <= ceiling)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: recorded in audit, used as a tier cap and to tell callers apart.

    ``subject`` is the grant id (builtin OAuth), the JWT ``sub``, or :data:`LOCAL_SUBJECT`.
    """

    subject: str | None
    client_id: str | None
    scopes: tuple[str, ...]

    @property
    def max_tier(self) -> int:
        """The highest tier this principal's scopes allow (see :func:`tier_ceiling`)."""
        return tier_ceiling(self.scopes)

    @property
    def is_admin(self) -> bool:
        """True when the scopes include ``relay-shell:admin`` (every tier, and other principals' work)."""
        return SCOPE_ADMIN in self.scopes


LOCAL_PRINCIPAL = Principal(subject=LOCAL_SUBJECT, client_id=None, scopes=(SCOPE_ADMIN,))
"""The one principal of stdio and of HTTP without OAuth: the local user, with no scope ceiling."""


def current_principal() -> Principal | None:
    """The authenticated principal of the current request, or ``None`` without authentication."""
    token = get_access_token()
    if token is None:
        return None
    return Principal(
        subject=token.subject or None, client_id=token.client_id or None, scopes=tuple(token.scopes)
    )


def principal_or_local() -> Principal:
    """:func:`current_principal`, or :data:`LOCAL_PRINCIPAL` when the request is not authenticated."""
    return current_principal() or LOCAL_PRINCIPAL
