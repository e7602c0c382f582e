"""What the whole call adds once its commands are classified.

:func:`opaque_floor`: opaque code is also read with the regex table, and what its text says
rounds the call's tier up. :func:`missing_commands`: a name on no PATH is opaque when the
same call writes files (it could create that program). Both append to or replace entries of
the call's command list.
"""

from __future__ import annotations

from dataclasses import replace

from relay_shell.policy.model import IRREVERSIBLE, READ_ONLY, STATEFUL, SimpleCommand
from relay_shell.policy.regex_floor import classify_text

_CREATES = (
    "writes.",
    "redirect.write",
    "files.",
    "etc_writes.",
    "permissions.",
    "disk.",
    "deletion.",
    "remote.copy",
    "network.http",
    "tools.",
    "git.",
)


def opaque_floor(commands: list[SimpleCommand], texts: list[str]) -> None:
    """Opaque code is read with the regex table too: what it says rounds its tier up
    (``awk 'BEGIN{system("rm -rf /x")}'``, ``"$@"`` after ``set -- rm -rf /x``)."""
    worst = max((command.tier for command in commands), default=READ_ONLY)
    if worst >= IRREVERSIBLE or not any(command.opaque for command in commands):
        return
    floor = classify_text("\n".join(text for text in texts if text))
    if floor.tier <= worst or floor.rule is None:
        return
    commands.append(
        SimpleCommand(
            "floor",
            "",
            "",
            floor.tier,
            floor.rule,
            True,
            f"opaque: the call runs code the classifier cannot follow, and its text reads as {floor.rule}",
            "regex table",
        )
    )


def missing_commands(commands: list[SimpleCommand], missing_positions: list[int]) -> None:
    """A name on no PATH is a typo, or a file this very call creates: when the call also
    writes files (or runs opaque code), running that name is opaque."""
    if not missing_positions:
        return
    missing = set(missing_positions)
    creates = any(
        index not in missing and not command.remote and (command.opaque or command.rule.startswith(_CREATES))
        for index, command in enumerate(commands)
    )
    if not creates:
        return
    for index in missing:
        command = commands[index]
        reason = f"opaque: {command.name} is on no PATH and this call writes files (it could create it)"
        commands[index] = replace(
            command, tier=max(STATEFUL, command.tier), opaque=True, rule="opaque.not_found", reason=reason
        )
