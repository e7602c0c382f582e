"""OAuth events in the audit trail: tier-0 records named ``oauth_consent``, ``oauth_token``, ``oauth_revoke``.

Every consent decision (approved, denied, a wrong passphrase or approval code, a request
closed after too many attempts, attempts refused by the global rate limit, an approval code
printed on the host), every token issued or refreshed and every revocation (by the client,
by the operator, by replay detection, by the format upgrade) is one record written through
the server's :class:`~relay_shell.governance.audit.AuditSink`, shaped like a tool call's:

    tool        oauth_consent | oauth_token | oauth_revoke
    tier        0
    decision    allowed (outcome ok) or denied
    outcome     ok | denied | invalid | unavailable
    event       what happened (approved, denied, wrong_passphrase, attempts_exhausted, ...)
    args        the details, redacted (client name, scopes asked and granted, method, ...)
    client_id   the OAuth client
    principal   the grant id, when there is one

Never a code, token, CSRF token, approval code, passphrase or pending request id: the
details name a request only by :func:`request_ref` (a digest prefix), since a request id
read back through ``audit_tail`` would let a token holder disturb the operator's login.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Literal

from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.records import RecordSink
from relay_shell.governance.redaction import redact

log = logging.getLogger("relay_shell.oauth")

OAuthTool = Literal["oauth_consent", "oauth_token", "oauth_revoke"]
OAuthOutcome = Literal["ok", "denied", "invalid", "unavailable"]


def request_ref(request_id: str) -> str:
    """A short, non-reversible name of a pending request for the audit trail."""
    return "r-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]


class OAuthAudit:
    """Writes OAuth events through the audit sink (or only logs them when there is none)."""

    def __init__(self, sink: RecordSink | None, *, policy_mode: str = "", required: bool = True) -> None:
        """``required`` mirrors ``RELAY_SHELL_AUDIT_REQUIRED``: no new grant while the sink is broken."""
        self._sink = sink
        self._policy_mode = policy_mode
        self._required = required

    def can_grant(self) -> bool:
        """False when the audit is required and its sink cannot be written (nothing may be granted)."""
        if self._sink is None or not self._required:
            return True
        return not self._sink.degraded or self._sink.check()

    def record(
        self,
        tool: OAuthTool,
        event: str,
        *,
        outcome: OAuthOutcome = "ok",
        client_id: str | None = None,
        grant: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        """Write one record; a sink that fails is logged with the record, never raised to the caller."""
        record: dict[str, object] = {
            "tool": tool,
            "tier": 0,
            "decision": "allowed" if outcome == "ok" else "denied",
            "outcome": outcome,
            "event": event,
            "args": redact(dict(details or {})),
            "target": None,
            "client_id": client_id,
            "principal": grant,
            "policy_mode": self._policy_mode,
        }
        if self._sink is None:
            log.info("oauth event: %s", record)
            return
        try:
            self._sink.write(record)
        except AuditUnavailable as exc:
            log.error("audit write failed (%s); record: %s", exc, record)
