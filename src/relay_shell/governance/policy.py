"""Admission (SPEC §6.2-§6.3): the deny list, the policy mode and the allow list.

Order, for every call: the deny regex is searched in the probe first, in every mode and
for every tier; then ``readonly`` admits tier 0 only, ``guarded`` refuses tier 2 and 3
unless the allow regex matches the probe, and ``open`` admits everything (the call is
still classified and audited).

The probe is ``"<tool> <text>"`` followed by one line per target (host, remote path,
forward destination) carrying the target as given and the canonical spellings of any IP
literal in it, so ``0x7f000001``, ``2130706433``, ``127.1`` or ``::ffff:127.0.0.1`` cannot
dodge a deny on ``127\\.0\\.0\\.1``. Host names are not resolved.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from relay_shell.config import PolicyMode, Settings
from relay_shell.errors import ConfigError, Decision
from relay_shell.policy.addresses import canonical_ip_forms

__all__ = ["PolicyConfig", "build_probe", "canonical_ip_forms", "decide"]

_MAX_TIER = 3
_TIER_NAMES = ("READ_ONLY", "REVERSIBLE", "STATEFUL", "IRREVERSIBLE")
_STOP = "do not retry with a rephrased command"


@dataclass(frozen=True)
class PolicyConfig:
    """The admission settings, with the regexes compiled once."""

    mode: PolicyMode
    deny: re.Pattern[str] | None
    allow: re.Pattern[str] | None

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        """Compile ``POLICY_DENY`` / ``POLICY_ALLOW``.

        Raises:
            ConfigError: a regex does not compile (the settings model normally catches it first).
        """
        return cls(
            mode=settings.policy_mode,
            deny=_compile(settings.policy_deny, "RELAY_SHELL_POLICY_DENY"),
            allow=_compile(settings.policy_allow, "RELAY_SHELL_POLICY_ALLOW"),
        )


def _compile(source: str | None, variable: str) -> re.Pattern[str] | None:
    if source is None:
        return None
    try:
        return re.compile(source)
    except re.error as exc:
        raise ConfigError(f"{variable}: not a valid regular expression: {exc}") from exc


# --- targets and the probe ----------------------------------------------------------------------


def build_probe(tool: str, text: str, targets: Sequence[str]) -> str:
    """``"<tool> <text>"``, then one line per target: the target and its canonical IP forms."""
    lines = [f"{tool} {text}"]
    for target in targets:
        lines.append(" ".join([target, *(form for form in canonical_ip_forms(target) if form != target)]))
    return "\n".join(lines)


# --- the decision ---------------------------------------------------------------------------------


def decide(
    config: PolicyConfig, tool: str, tier: int, probe: str, *, classified_by: str | None = None
) -> Decision:
    """Admit or refuse one call (see the module docstring for the order).

    ``classified_by`` (the classifier rule, when one set the tier) only enriches the reason.
    A refusal's ``rule`` is ``"deny"``, ``"mode:readonly"`` or ``"mode:guarded"``; an
    admission's is ``"allow"`` when the allow list was needed, else None. ``tool`` is
    part of the probe already and is named in the reason.

    Raises:
        ValueError: ``tier`` is not 0..3.
    """
    if not 0 <= tier <= _MAX_TIER:
        raise ValueError(f"tier must be 0..3, got {tier}")
    mode = config.mode
    what = f"tier {tier} {_TIER_NAMES[tier]}" + (f" rule {classified_by}" if classified_by else "")
    if config.deny is not None and config.deny.search(probe):
        return _refuse(
            tier,
            "deny",
            mode,
            f"refused by policy (mode {mode.value}, {tool}, {what}: the deny list RELAY_SHELL_POLICY_DENY "
            "matches this call or its target): ask the operator to run it or to change "
            f"RELAY_SHELL_POLICY_DENY; {_STOP}",
        )
    if mode is PolicyMode.READONLY and tier > 0:
        return _refuse(
            tier,
            "mode:readonly",
            mode,
            f"refused by policy (mode readonly admits only read-only tools; {tool} is {what}): ask the "
            f"operator to run it or to change RELAY_SHELL_POLICY_MODE; {_STOP}",
        )
    if mode is PolicyMode.GUARDED and tier >= 2:
        if config.allow is None or not config.allow.search(probe):
            return _refuse(
                tier,
                "mode:guarded",
                mode,
                f"refused by policy (mode guarded, {tool}, {what}): ask the operator to run it or to "
                f"change RELAY_SHELL_POLICY_ALLOW; {_STOP}",
            )
        return Decision(
            True, tier, f"admitted by RELAY_SHELL_POLICY_ALLOW (mode guarded, {what})", "allow", mode.value
        )
    return Decision(True, tier, f"admitted (mode {mode.value}, {what})", None, mode.value)


def _refuse(tier: int, rule: str, mode: PolicyMode, reason: str) -> Decision:
    return Decision(allowed=False, tier=tier, reason=reason, rule=rule, mode=mode.value)
