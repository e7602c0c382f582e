"""The shared words: defined once, with the values clients and audit readers see."""

from __future__ import annotations

import pytest

from relay_shell import errors
from relay_shell.vocabulary import (
    AuditDecision,
    AuditOutcome,
    Confirmation,
    ErrorKind,
    Tier,
    decision_of,
    outcome_of,
)


def test_tiers_are_ordered_integers_with_their_names() -> None:
    assert [(int(tier), tier.name) for tier in Tier] == [
        (0, "READ_ONLY"),
        (1, "REVERSIBLE"),
        (2, "STATEFUL"),
        (3, "IRREVERSIBLE"),
    ]
    assert Tier.STATEFUL > Tier.REVERSIBLE
    assert Tier(3).label() == "tier 3 (IRREVERSIBLE)"


def test_the_wire_values() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "denied", "confirm_required", "invalid", "timeout", "cancelled", "failed", "unavailable",
    ]  # fmt: skip
    assert [outcome.value for outcome in AuditOutcome] == [
        "ok", "failed", "error", "timeout", "cancelled", "denied", "running", "invalid", "unavailable",
    ]  # fmt: skip
    assert [decision.value for decision in AuditDecision] == ["allowed", "denied", "confirm_required"]
    assert Confirmation.ELICIT_PENDING == "elicit:pending"


@pytest.mark.parametrize(
    ("kind", "outcome", "decision"),
    [
        (ErrorKind.DENIED, AuditOutcome.DENIED, AuditDecision.DENIED),
        (ErrorKind.CONFIRM_REQUIRED, AuditOutcome.DENIED, AuditDecision.CONFIRM_REQUIRED),
        (ErrorKind.TIMEOUT, AuditOutcome.TIMEOUT, None),
        (ErrorKind.CANCELLED, AuditOutcome.CANCELLED, None),
        (ErrorKind.INVALID, AuditOutcome.ERROR, None),
        (ErrorKind.FAILED, AuditOutcome.ERROR, None),
        (ErrorKind.UNAVAILABLE, AuditOutcome.ERROR, None),
    ],
)
def test_what_a_failure_means_for_the_audit(
    kind: ErrorKind, outcome: AuditOutcome, decision: AuditDecision | None
) -> None:
    assert (outcome_of(kind), decision_of(kind)) == (outcome, decision)


def test_every_error_class_carries_a_kind_of_the_vocabulary() -> None:
    classes = [
        errors.InvalidInput, errors.PolicyDenied, errors.ConfirmationRequired, errors.AuditUnavailable,
        errors.ExecTimeout, errors.ExecFailed, errors.RemoteFailed, errors.SessionNotFound, errors.LimitReached,
    ]  # fmt: skip
    assert {cls.__name__: isinstance(cls.kind, ErrorKind) for cls in classes} == {
        cls.__name__: True for cls in classes
    }
