"""Admission over a parsed call: deny list, protected files, policy mode, allow list.

Order, for every call:

1. **deny** (every mode): the regex is searched in the raw probe (tool, text, targets with
   their canonical IP forms), in every normalised simple command and its other spellings,
   and in the canonical forms of the IP literals found inside the text. With a deny list
   configured, an **opaque** call is refused too: the deny list cannot see through it.
2. **protected files** (every mode, unless ``RELAY_SHELL_POLICY_ALLOW_PROTECTED``): a call
   that names the relay's own files or administration verbs.
3. **mode**: ``readonly`` admits tier 0 only; ``guarded`` admits a call whose tier-2+ and
   opaque commands are each fully matched by the allow regex (one allowed command does not
   carry another); ``open`` admits everything.

Refusals name the sub-command and the rule, and tell the model to ask the operator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from relay_shell.config import PolicyMode
from relay_shell.errors import Decision
from relay_shell.policy.model import STATEFUL, TIER_NAMES, Analysis, SimpleCommand

STOP = "do not retry with a rephrased command or split it into parts"
MAX_TIER = 3


@dataclass(frozen=True)
class Lists:
    """The policy: mode, compiled deny and allow regexes, and the protected-files escape hatch."""

    mode: PolicyMode
    deny: re.Pattern[str] | None = None
    allow: re.Pattern[str] | None = None
    allow_protected: bool = False


def deny_texts(probe: str, analysis: Analysis | None) -> Iterable[tuple[str, SimpleCommand | None]]:
    """Every text the deny regex is searched in, with the command it belongs to."""
    yield probe, None
    if analysis is None:
        return
    for command in analysis.commands:
        yield command.text, command
        for spelling in command.spellings:
            yield spelling, command
    if analysis.addresses:
        yield "\n".join(analysis.addresses), None


def decide(
    lists: Lists,
    tool: str,
    tier: int,
    probe: str,
    analysis: Analysis | None = None,
    *,
    classified_by: str | None = None,
) -> Decision:
    """Admit or refuse one call (see the module docstring).

    ``tier`` is the call's final tier (the classification raised to the tool's floor).

    Raises:
        ValueError: ``tier`` is not 0..3.
    """
    if not 0 <= tier <= MAX_TIER:
        raise ValueError(f"tier must be 0..3, got {tier}")
    refusal = _deny(lists, tool, tier, probe, analysis, classified_by)
    if refusal is None:
        refusal = _protected(lists, tool, tier, analysis)
    if refusal is None:
        refusal = _mode(lists, tool, tier, probe, analysis, classified_by)
    if refusal is not None:
        return refusal
    what = _what(tier, analysis, classified_by)
    if lists.mode is PolicyMode.GUARDED and _needs_allow(tier, analysis):
        return _decision(
            True,
            tier,
            f"admitted by RELAY_SHELL_POLICY_ALLOW (mode guarded, {what})",
            "allow",
            lists,
            analysis,
            None,
        )
    return _decision(True, tier, f"admitted (mode {lists.mode.value}, {what})", None, lists, analysis, None)


def _deny(
    lists: Lists, tool: str, tier: int, probe: str, analysis: Analysis | None, classified_by: str | None
) -> Decision | None:
    if lists.deny is None:
        return None
    for text, command in deny_texts(probe, analysis):
        if lists.deny.search(text):
            where = f"`{command.text[:200]}`" if command is not None else "this call or its target"
            return _refuse(
                tier,
                "deny",
                lists,
                analysis,
                command,
                f"refused by policy (mode {lists.mode.value}, {tool}, {_what(tier, analysis, classified_by)}):"
                f" the deny list RELAY_SHELL_POLICY_DENY matches {where}; ask the operator to run it or "
                f"to change RELAY_SHELL_POLICY_DENY; {STOP}",
            )
    if analysis is not None and analysis.opaque:
        command = next(c for c in analysis.commands if c.opaque)
        return _refuse(
            tier,
            "deny:opaque",
            lists,
            analysis,
            command,
            f"refused by policy (mode {lists.mode.value}, {tool}): `{command.text[:200]}` is opaque "
            f"({command.reason.removeprefix('opaque: ')}), and with a deny list configured an opaque "
            f"call is refused because the deny list cannot see what it runs; ask the operator; {STOP}",
        )
    return None


def _protected(lists: Lists, tool: str, tier: int, analysis: Analysis | None) -> Decision | None:
    if analysis is None or not analysis.protected or lists.allow_protected:
        return None
    command = next((c for c in analysis.commands if c.rule.startswith("protected.")), analysis.driver)
    return _refuse(
        tier,
        "protected",
        lists,
        analysis,
        command,
        f"refused in every mode ({tool}): `{command.text[:200] if command else ''}` names the relay's "
        f"own files or administration commands ({command.reason if command else 'protected'}); only "
        f"the operator may do this (RELAY_SHELL_POLICY_ALLOW_PROTECTED); {STOP}",
    )


def _mode(
    lists: Lists, tool: str, tier: int, probe: str, analysis: Analysis | None, classified_by: str | None
) -> Decision | None:
    what = _what(tier, analysis, classified_by)
    if lists.mode is PolicyMode.READONLY and tier > 0:
        command = _first_above_zero(analysis)
        return _refuse(
            tier,
            "mode:readonly",
            lists,
            analysis,
            command,
            f"refused by policy (mode readonly admits only known-safe reads; {tool} is {what}"
            f"{_naming(command)}): ask the operator to run it or to change RELAY_SHELL_POLICY_MODE; {STOP}",
        )
    if lists.mode is not PolicyMode.GUARDED or not _needs_allow(tier, analysis):
        return None
    needing = analysis.needing_allow() if analysis is not None else ()
    for command in needing:
        if lists.allow is None or not _allowed(lists.allow, command):
            return _refuse(
                tier,
                "mode:guarded",
                lists,
                analysis,
                command,
                f"refused by policy (mode guarded, {tool}, {what}{_naming(command)}): every stateful, "
                f"irreversible or opaque command must be matched in full by RELAY_SHELL_POLICY_ALLOW; "
                f"ask the operator to run it or to change the allow list; {STOP}",
            )
    if needing:
        return None
    # The tier comes from the tool itself (a transfer, a forward): the allow list reads the probe.
    if lists.allow is None or not lists.allow.search(probe):
        return _refuse(
            tier,
            "mode:guarded",
            lists,
            analysis,
            None,
            f"refused by policy (mode guarded, {tool}, {what}): ask the operator to run it or to "
            f"change RELAY_SHELL_POLICY_ALLOW; {STOP}",
        )
    return None


def _allowed(allow: re.Pattern[str], command: SimpleCommand) -> bool:
    return allow.fullmatch(command.text) is not None


def _needs_allow(tier: int, analysis: Analysis | None) -> bool:
    return tier >= STATEFUL or (analysis is not None and analysis.opaque)


def _first_above_zero(analysis: Analysis | None) -> SimpleCommand | None:
    if analysis is None:
        return None
    return next((c for c in analysis.commands if c.tier > 0 or c.opaque), analysis.driver)


def _naming(command: SimpleCommand | None) -> str:
    if command is None:
        return ""
    opaque_note = f", {command.reason}" if command.opaque else ""
    return f"; sub-command `{command.text[:200]}` is tier {command.tier} rule {command.rule}{opaque_note}"


def _what(tier: int, analysis: Analysis | None, classified_by: str | None) -> str:
    rule = classified_by or (analysis.rule if analysis else None)
    opaque_note = " opaque" if analysis is not None and analysis.opaque else ""
    return f"tier {tier} {TIER_NAMES[tier]}{opaque_note}" + (f" rule {rule}" if rule else "")


def _refuse(
    tier: int, rule: str, lists: Lists, analysis: Analysis | None, command: SimpleCommand | None, reason: str
) -> Decision:
    return _decision(False, tier, reason, rule, lists, analysis, command)


def _decision(
    allowed: bool,
    tier: int,
    reason: str,
    rule: str | None,
    lists: Lists,
    analysis: Analysis | None,
    command: SimpleCommand | None,
) -> Decision:
    driver = command or (analysis.driver if analysis else None)
    return Decision(
        allowed=allowed,
        tier=tier,
        reason=reason,
        rule=rule,
        mode=lists.mode.value,
        subcommand=driver.text if driver is not None else None,
        opaque=bool(analysis and analysis.opaque),
        classifier_rule=driver.rule if driver is not None else None,
    )
