"""A revoked builtin OAuth grant ends what it left running.

Revoking a grant (``relay-shell --revoke-grant``, the client's own ``/revoke``, a replayed
code or refresh token, or the grant cap) kills its tokens at once: every token check sees
the state file's latest version (``StateStore.snapshot``). What the grant owns (PTY sessions, jobs and MCP tasks, forwards)
would stay alive and reachable only by an admin, so the server watches the state file
too: every ``interval_s`` while some grant owns live work, :meth:`GrantWatch.check` reads
the revocations recorded there (``OAuthState.revoked``, with ``via``) and ends each revoked
owner's work through :func:`relay_shell.principals.end_owned`, audited with ``actor``
``oauth_revoke:<via>`` (``oauth_revoke:operator`` for the operator's revocation). Until
then an admin still sees that work, with its owner.

A grant that merely expired (its refresh token lapsed) is not a revocation: its work is
left to the usual limits (idle timeout, lifetime, job retention) and to an admin.
"""

from __future__ import annotations

import logging

from relay_shell.http.oauth_state import OAuthStateUnavailable, StateStore
from relay_shell.periodic import Periodic
from relay_shell.principals import end_owned, live_owners
from relay_shell.services import Services

log = logging.getLogger("relay_shell.http")

WATCH_INTERVAL_S = 1.0


class GrantWatch:
    """Ends the work of revoked grants (see the module docstring)."""

    def __init__(
        self, store: StateStore, services: Services, *, interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self._store = store
        self._services = services
        self._interval_s = interval_s

    async def check(self) -> list[str]:
        """End the work of every revoked grant that still owns some; the grants ended, sorted.

        Reads the state file only when some principal owns live work. An unreadable state
        file ends nothing (token checks refuse every token meanwhile).
        """
        owners = live_owners(self._services)
        if not owners:
            return []
        try:
            revoked = self._store.snapshot().revoked
        except OAuthStateUnavailable as exc:
            log.warning("grant watch: %s", exc.message)
            return []
        ended = sorted(owners & revoked.keys())
        for grant in ended:
            await end_owned(self._services, grant, f"oauth_revoke:{revoked[grant].via}")
        return ended

    def periodic(self) -> Periodic:
        """:meth:`check` every ``interval_s`` while the services run (a failed check is logged)."""
        return Periodic("grant watch", self._interval_s, self.check, log)
