"""Which PTY sessions and SSH forwards a caller may use: the owner rule of ``governance/ownership.py``.

A session (``sh-...``, ``ssh-...``) or a forward (``fwd-...``) belongs to the principal that
opened it: the grant (builtin OAuth), the token's ``sub`` (JWT), or the one local principal
(stdio and HTTP without OAuth, ``None``). A tool that addresses one by id refuses another
principal's as ``denied`` with rule ``owner``, in its planner: before anything of the session
is read, typed into, classified or shown in a confirmation question. An admin (scopes that
reach tier 3, or no OAuth) may use anyone's. ``session_list`` and ``ssh_forward_list`` show
a caller only its own; an admin sees all, each row naming its owner. An unknown id is refused
as it always was (``invalid``, naming ``session_id`` or ``forward_id``), as for jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relay_shell.governance.call import Identity
from relay_shell.governance.ownership import may_access, require_owner
from relay_shell.sessions import SessionInfo, SessionRegistry
from relay_shell.vocabulary import Tier

if TYPE_CHECKING:
    from relay_shell.ssh.forwards import ForwardInfo, ForwardManager


def owned_session(registry: SessionRegistry, session_id: str, caller: Identity, tier: Tier) -> SessionInfo:
    """The session, if ``caller`` may use it.

    Raises:
        SessionNotFound: unknown id.
        PolicyDenied: the session belongs to another principal and the caller is no admin
            (a denial at ``tier``, rule ``owner``).
    """
    info = registry.info(session_id)
    require_owner(info.owner, caller, f"session {session_id}", tier)
    return info


def visible_sessions(registry: SessionRegistry, caller: Identity) -> list[SessionInfo]:
    """The PTY sessions ``session_list`` shows ``caller``: its own, or every one for an admin."""
    return [info for info in registry.list() if may_access(info.owner, caller)]


def owned_forward(forwards: ForwardManager, forward_id: str, caller: Identity, tier: Tier) -> ForwardInfo:
    """The forward, if ``caller`` may use it.

    Raises:
        InvalidInput: (argument ``forward_id``) unknown id.
        PolicyDenied: the forward belongs to another principal and the caller is no admin
            (a denial at ``tier``, rule ``owner``).
    """
    info = forwards.info(forward_id)
    require_owner(info.owner, caller, f"forward {forward_id}", tier)
    return info


def visible_forwards(forwards: ForwardManager, caller: Identity) -> list[ForwardInfo]:
    """The forwards ``ssh_forward_list`` shows ``caller``: its own, or every one for an admin."""
    return [info for info in forwards.list() if may_access(info.owner, caller)]
