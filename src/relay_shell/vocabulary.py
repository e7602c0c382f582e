"""The words every layer shares, defined once: tiers, error kinds, audit outcomes and decisions.

Each is an enum whose values are the strings clients and audit readers see (``StrEnum``
members compare equal to those strings, so a record or a ``structuredContent`` field
reads the same as before). This module imports nothing from relay-shell: ``errors``,
``governance`` and the tool layer all build on it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Tier(IntEnum):
    """How much a call can change (docs/adr/0003-tiered-authority.md). Ambiguity rounds up."""

    READ_ONLY = 0
    REVERSIBLE = 1
    STATEFUL = 2
    IRREVERSIBLE = 3

    def label(self) -> str:
        """``"tier 2 (STATEFUL)"``: how reasons and confirmations name a tier."""
        return f"tier {int(self)} ({self.name})"


class ErrorKind(StrEnum):
    """``structuredContent.error.kind`` of an ``isError`` result: what a program branches on."""

    DENIED = "denied"
    CONFIRM_REQUIRED = "confirm_required"
    INVALID = "invalid"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class AuditOutcome(StrEnum):
    """The audit record's ``outcome``: how the call ended.

    ``failed`` (a non-zero exit where that is a failure: fan-out hosts, job ends),
    ``running`` (a call that handed its work to a job), ``invalid`` and ``unavailable`` are
    part of the vocabulary for the stages that write them; the pipeline writes ``ok``,
    ``error``, ``timeout``, ``cancelled``, ``denied``, ``running`` (a call that yielded) and
    ``failed`` (a job that ended with a non-zero exit or could not run).
    """

    OK = "ok"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    DENIED = "denied"
    RUNNING = "running"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


class AuditDecision(StrEnum):
    """The audit record's ``decision``: what admission concluded."""

    ALLOWED = "allowed"
    DENIED = "denied"
    CONFIRM_REQUIRED = "confirm_required"


class Confirmation(StrEnum):
    """Where a tier-3 confirmation stands; the audit record's ``confirmation`` field."""

    TOKEN_ISSUED = "token:issued"
    TOKEN_ACCEPTED = "token:accepted"
    ELICIT_ACCEPT = "elicit:accept"
    ELICIT_DECLINE = "elicit:decline"
    ELICIT_CANCEL = "elicit:cancel"
    ELICIT_UNSUPPORTED = "elicit:unsupported"
    ELICIT_PENDING = "elicit:pending"
    """The question travels inside the result (protocol >= 2026-07-28); the client retries."""


def outcome_of(kind: ErrorKind) -> AuditOutcome:
    """The audit outcome of a call that failed with ``kind``."""
    return _OUTCOME_OF_KIND.get(kind, AuditOutcome.ERROR)


def decision_of(kind: ErrorKind) -> AuditDecision | None:
    """The decision a failure of ``kind`` implies, or None when it says nothing about admission."""
    return _DECISION_OF_KIND.get(kind)


_OUTCOME_OF_KIND = {
    ErrorKind.TIMEOUT: AuditOutcome.TIMEOUT,
    ErrorKind.CANCELLED: AuditOutcome.CANCELLED,
    ErrorKind.DENIED: AuditOutcome.DENIED,
    ErrorKind.CONFIRM_REQUIRED: AuditOutcome.DENIED,
}
_DECISION_OF_KIND = {
    ErrorKind.DENIED: AuditDecision.DENIED,
    ErrorKind.CONFIRM_REQUIRED: AuditDecision.CONFIRM_REQUIRED,
}
