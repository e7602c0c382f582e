"""Who may read or stop what a call left running (a job, an MCP task; PTY sessions can use it too).

Work belongs to the principal that started it (``Identity.subject``; ``None`` for the one
local principal when there is no OAuth). Another principal's reads and kills are refused
as ``denied``; an admin (a token whose scopes allow tier 3, or any caller when there is no
OAuth) may read and stop anyone's.
"""

from __future__ import annotations

from relay_shell.errors import Decision, PolicyDenied
from relay_shell.governance.call import Identity
from relay_shell.vocabulary import Tier

OWNER_RULE = "owner"


def is_admin(identity: Identity) -> bool:
    """No OAuth (no scope ceiling), or a token whose scopes reach tier 3."""
    return identity.max_tier is None or identity.max_tier >= Tier.IRREVERSIBLE


def may_access(owner: str | None, identity: Identity) -> bool:
    """Whether ``identity`` may read or stop work owned by ``owner``."""
    return is_admin(identity) or owner == identity.subject


def require_owner(owner: str | None, identity: Identity, what: str, tier: Tier) -> None:
    """Refuse (as a denial at ``tier``) access by anyone but the owner or an admin.

    Raises:
        PolicyDenied: ``identity`` is neither the owner of ``what`` nor an admin (rule ``owner``).
    """
    if may_access(owner, identity):
        return
    raise PolicyDenied(
        Decision(
            allowed=False,
            tier=int(tier),
            reason=f"refused: {what} belongs to another principal; only its owner or an admin may use it",
            rule=OWNER_RULE,
        )
    )
