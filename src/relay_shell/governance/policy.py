"""Admission: the deny list, protected files, the policy mode and the allow list.

Order, for every call: the deny regex is searched in the probe (and, for a parsed call, in
every normalised simple command) first, in every mode and for every tier; then protected
files are refused in every mode; then ``readonly`` admits tier 0 only, ``guarded`` refuses
tier 2, tier 3 and opaque commands unless the allow regex matches each of them in full
(the probe, for tools that run no text), and ``open`` admits everything (the call is still
classified and audited). The rules themselves live in :mod:`relay_shell.policy.decide`.

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
from relay_shell.policy.decide import Lists
from relay_shell.policy.decide import decide as decide_call
from relay_shell.policy.model import Analysis

__all__ = ["PolicyConfig", "build_probe", "canonical_ip_forms", "decide"]


@dataclass(frozen=True)
class PolicyConfig:
    """The admission settings, with the regexes compiled once."""

    mode: PolicyMode
    deny: re.Pattern[str] | None
    allow: re.Pattern[str] | None
    allow_protected: bool = False

    @property
    def lists(self) -> Lists:
        """The same settings in the form the pure decision reads."""
        return Lists(self.mode, self.deny, self.allow, self.allow_protected)

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
            allow_protected=settings.policy_allow_protected,
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
    config: PolicyConfig,
    tool: str,
    tier: int,
    probe: str,
    *,
    classified_by: str | None = None,
    analysis: Analysis | None = None,
) -> Decision:
    """Admit or refuse one call (order and rules: :mod:`relay_shell.policy.decide`).

    ``analysis`` is the parse of the call when it runs text: the deny list then also reads
    every normalised simple command, opaque calls are refused when a deny list is set,
    protected files are refused in every mode, and in guarded mode the allow regex must
    match each tier-2+ or opaque command in full. ``classified_by`` (the classifier rule,
    when one set the tier) only enriches the reason. A refusal's ``rule`` is ``"deny"``,
    ``"deny:opaque"``, ``"protected"``, ``"mode:readonly"`` or ``"mode:guarded"``; an
    admission's is ``"allow"`` when the allow list was needed, else None.

    Raises:
        ValueError: ``tier`` is not 0..3.
    """
    return decide_call(config.lists, tool, tier, probe, analysis, classified_by=classified_by)
