"""The confirmation stage of a call: tier 3 and opaque calls under ``CONFIRM_TIER3``.

``token`` issues a single-use token bound to the exact call and its principal (the same call
re-issued with ``confirm_token`` runs once); ``elicit`` asks the human through the client
(:class:`~relay_shell.governance.confirm.Confirmer`). docs/adr/0007-tier3-confirmation.md.
"""

from __future__ import annotations

from relay_shell.config import ConfirmMode
from relay_shell.errors import ConfirmationRequired
from relay_shell.governance.confirm import Confirmer, ConfirmTokens, call_binding
from relay_shell.governance.record import CallState
from relay_shell.vocabulary import AuditDecision, AuditOutcome, Confirmation, Tier

_ELICIT_STATES = {
    "accept": Confirmation.ELICIT_ACCEPT,
    "decline": Confirmation.ELICIT_DECLINE,
    "cancel": Confirmation.ELICIT_CANCEL,
    "unsupported": Confirmation.ELICIT_UNSUPPORTED,
    "pending": Confirmation.ELICIT_PENDING,
}


async def confirm_call(
    state: CallState,
    tier: Tier,
    summary: str,
    mode: ConfirmMode,
    tokens: ConfirmTokens,
    confirmer: Confirmer | None,
) -> bool:
    """Confirm a tier-3 or opaque call (``summary`` is what the human is shown); others pass.

    Records the confirmation and decision on ``state``. Returns True when the question is
    pending in the client (the call ends now).

    Raises:
        ConfirmationRequired: no confirmation (a token was issued, or the human said no).
    """
    irreversible = tier >= Tier.IRREVERSIBLE
    opaque = state.analysis is not None and state.analysis.opaque
    if not (irreversible or opaque) or mode is ConfirmMode.OFF:
        return False
    what = (
        "tier 3 (IRREVERSIBLE)"
        if irreversible
        else "an opaque call (its effect cannot be checked before it runs)"
    )
    if mode is ConfirmMode.TOKEN:
        _confirm_token(state, tokens, summary, what)
        return False
    answer = (
        await confirmer.ask(
            f"Run this {'tier-3 (irreversible)' if irreversible else 'opaque'} call? {summary}"
        )
        if confirmer
        else "unsupported"
    )
    state.confirmation = _ELICIT_STATES[answer]
    if answer == "accept":
        return False
    state.decision = AuditDecision.CONFIRM_REQUIRED
    if answer == "pending":
        state.outcome_kind = AuditOutcome.DENIED
        return True
    if answer == "unsupported":
        raise ConfirmationRequired(
            f"{what} needs a human confirmation but this client does not support elicitation; "
            "ask the operator to run it or to connect with a client that can confirm"
        )
    raise ConfirmationRequired(f"the operator did not approve this call ({answer}); do not retry it")


def _confirm_token(state: CallState, tokens: ConfirmTokens, summary: str, what: str) -> None:
    binding = call_binding(state.tool, state.binding, state.identity.who())
    offered = state.binding.get("confirm_token")
    if isinstance(offered, str) and offered:
        if tokens.consume(offered, binding):
            state.confirmation = Confirmation.TOKEN_ACCEPTED
            return
        state.decision = AuditDecision.CONFIRM_REQUIRED
        raise ConfirmationRequired("the confirm_token is unknown, expired, spent or for a different call")
    token = tokens.issue(binding)
    state.decision = AuditDecision.CONFIRM_REQUIRED
    state.confirmation = Confirmation.TOKEN_ISSUED
    raise ConfirmationRequired(
        f"{what} needs confirmation: show the operator exactly this call ({summary}) and, "
        "only if they approve, re-issue the identical call with confirm_token set to the token "
        "(single use, expires in 5 minutes)",
        token=token,
    )
