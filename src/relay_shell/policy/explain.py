"""``relay-shell --explain``: the parse of a command and what each policy mode would decide.

For operators tuning the deny and allow lists: each simple command with its normalised
text, tier, rule and opaque flag (nested ones indented under the code that runs them), and
the decision of ``readonly``, ``guarded`` and ``open`` with the configured lists. It reads
the same :class:`Analysis` the pipeline reads; nothing is re-derived.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace

from relay_shell.config import PolicyMode, Settings
from relay_shell.policy.analyze import Analyzer, PolicyEnvironment
from relay_shell.policy.decide import Lists, decide
from relay_shell.policy.model import TIER_NAMES, Analysis, CallText

TOOL = "shell_exec"


def explain(command: str, settings: Settings, modes: Sequence[PolicyMode]) -> dict[str, object]:
    """The report for ``command`` run by ``shell_exec`` under ``settings``, for each of ``modes``."""
    environment = replace(PolicyEnvironment.from_settings(settings), spellings=True)
    analysis = Analyzer(environment).analyze(CallText(shell=command))
    deny = re.compile(settings.policy_deny) if settings.policy_deny else None
    allow = re.compile(settings.policy_allow) if settings.policy_allow else None
    probe = f"{TOOL} {command}"
    decisions = {}
    for mode in modes:
        decision = decide(
            Lists(mode, deny, allow, settings.policy_allow_protected), TOOL, analysis.tier, probe, analysis
        )
        decisions[mode.value] = {
            "allowed": decision.allowed,
            "rule": decision.rule,
            "subcommand": decision.subcommand,
            "reason": decision.reason,
        }
    return {"command": command, **analysis.to_dict(), "decisions": decisions}


def render(report: dict[str, object]) -> str:
    """The report as text for a terminal."""
    tier = report["tier"]
    assert isinstance(tier, int)
    lines = [
        f"command: {report['command']!r}",
        f"tier {tier} {TIER_NAMES[tier]} · opaque: {'yes' if report['opaque'] else 'no'} · rule {report['rule']}",
        "simple commands:",
    ]
    commands = report["commands"]
    assert isinstance(commands, list)
    for index, command in enumerate(commands, 1):
        indent = "  " * (1 + int(command["depth"]))
        flag = " OPAQUE" if command["opaque"] else ""
        lines.append(
            f"{indent}{index}. [{command['kind']}] {command['text']}\n"
            f"{indent}   tier {command['tier']}{flag} · {command['rule']} · from {command['origin']} · {command['reason']}"
        )
    lines.append("decisions:")
    decisions = report["decisions"]
    assert isinstance(decisions, dict)
    for mode, decision in decisions.items():
        verdict = "admitted" if decision["allowed"] else "refused"
        rule = f" ({decision['rule']})" if decision["rule"] else ""
        lines.append(f"  {mode:<8} {verdict}{rule}")
        if not decision["allowed"]:
            lines.append(f"           {decision['reason']}")
    return "\n".join(lines)


def main_explain(command: str, settings: Settings, mode: str | None, as_json: bool) -> int:
    """Print the report (``--json``: machine-readable); the exit code is always 0."""
    modes = [PolicyMode(mode)] if mode else list(PolicyMode)
    report = explain(command, settings, modes)
    try:
        print(json.dumps(report, indent=2) if as_json else render(report))
    except BrokenPipeError:  # ``relay-shell --explain ... | head``: as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


__all__ = ["Analysis", "explain", "main_explain", "render"]
