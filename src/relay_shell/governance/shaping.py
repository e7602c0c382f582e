"""The shape stage: an executor's :class:`Outcome` or a :class:`RelayError` becomes a :class:`Reply`.

Success: the outcome's text (plus ``note:`` lines) and its data plus ``tier`` and ``notes``.
Failure: the text ``"<kind> · tier N: <message>"`` (plus the partial output of a timeout),
``data.tier`` (null when the call was refused before it was classified) and ``data.error`` = ``{kind, message, tier?, reason?, rule?, mode?, subcommand?, opaque?,
argument?, confirm_token?}`` with any partial output fields beside it
(docs/architecture.md, "Two planes").
"""

from __future__ import annotations

from collections.abc import Sequence

from relay_shell.errors import (
    ConfirmationRequired,
    ExecTimeout,
    InvalidInput,
    PolicyDenied,
    RelayError,
    RemoteFailed,
    RemoteUnreachable,
    SessionNotFound,
)
from relay_shell.governance.call import Outcome, Reply
from relay_shell.vocabulary import Tier


def shape_success(outcome: Outcome, tier: Tier, notes: Sequence[str]) -> Reply:
    """The reply of a call whose executor returned ``outcome``."""
    data = dict(outcome.data)
    data["tier"] = int(tier)
    text = outcome.text
    remarks = [*notes, *outcome.notes]
    if remarks:
        data["notes"] = remarks
        text = text + "\n" + "\n".join(f"note: {note}" for note in remarks)
    return Reply(text=text, data=data, job=outcome.job)


def error_fields(exc: RelayError, tier: Tier | None) -> dict[str, object]:
    """``structuredContent.error`` of a failure: the kind, the message, and what the error carries."""
    error: dict[str, object] = {"kind": exc.kind.value, "message": exc.message}
    if tier is not None:
        error["tier"] = int(tier)
    if isinstance(exc, PolicyDenied):
        decision = exc.decision
        error["reason"] = decision.rule or "policy"
        error["rule"] = decision.rule
        error["mode"] = decision.mode or None
        if decision.subcommand is not None:
            error["subcommand"] = decision.subcommand
        if decision.opaque is not None:
            error["opaque"] = decision.opaque
    if isinstance(exc, ConfirmationRequired) and exc.token:
        error["confirm_token"] = exc.token
    if isinstance(exc, InvalidInput):
        error["argument"] = exc.argument
    if isinstance(exc, SessionNotFound):
        error["argument"] = "session_id"
    if isinstance(exc, RemoteUnreachable | RemoteFailed) and exc.reason:
        error["reason"] = exc.reason
    return error


def shape_failure(exc: RelayError, tier: Tier | None) -> Reply:
    """The reply of a call that failed with ``exc`` (at tier ``tier`` when it got that far)."""
    data: dict[str, object] = {}
    partial_text = ""
    if isinstance(exc, ExecTimeout):
        data.update(exc.partial.fields)
        partial_text = exc.partial.text
    data["error"] = error_fields(exc, tier)
    header = exc.kind.value
    data["tier"] = int(tier) if tier is not None else None  # present in every result (null: not classified)
    if tier is not None:
        header += f" · tier {int(tier)}"
    text = f"{header}: {exc.message}"
    if isinstance(exc, ConfirmationRequired) and exc.token:
        text += f"\nconfirm_token: {exc.token}"
    if partial_text:
        text += "\n--- partial output ---\n" + partial_text
    return Reply(text=text, data=data, error=exc)
