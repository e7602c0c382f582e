"""Turn shell_exec / shell_script arguments into a validated :class:`ProcessSpec` and the
:class:`CallText` the classifier reads (the same text, by channel)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from relay_shell.errors import InvalidInput
from relay_shell.local.environment import apply_overlay, build_child_env, validate_cwd, validate_env_overlay
from relay_shell.local.runner import ProcessSpec
from relay_shell.policy.model import CallText
from relay_shell.policy.model import Interpreter as ScriptLanguage

Interpreter = Literal["bash", "sh", "python"]
INTERPRETERS: Mapping[str, list[str]] = {
    "bash": ["/bin/bash", "-s"],
    "sh": ["/bin/sh", "-s"],
    "python": [sys.executable, "-"],
}
STRICT_PRELUDE = "set -euo pipefail\n"
MAX_TEXT = 8 * 1024 * 1024


@dataclass(frozen=True)
class PreparedCommand:
    """A validated command: what to run, the raw probe the deny list reads, and the same by
    channel (``call``) for the grammar-aware classifier."""

    spec: ProcessSpec
    probe: str  # everything the executor sees, for the classifier and the deny list
    call: CallText

    def with_overlay(self, overlay: Mapping[str, str | None]) -> ProcessSpec:
        """The spec with ``overlay`` applied to its environment (the classifier's exec_env)."""
        if not overlay:
            return self.spec
        return replace(self.spec, env=apply_overlay(self.spec.env, overlay))


def _env_probe(overlay: Mapping[str, str | None]) -> str:
    return " ".join(f"{name}={value if value is not None else ''}" for name, value in overlay.items())


def _check_text(value: str, argument: str, *, required: bool) -> None:
    if required and not value.strip():
        raise InvalidInput(argument, "must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidInput(argument, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise InvalidInput(argument, "contains a NUL byte")


def prepare_exec(
    command: str, *, stdin: str, env: object, cwd: str, use_shell: bool, merge_stderr: bool
) -> PreparedCommand:
    """Validate shell_exec arguments. ``use_shell`` runs ``/bin/sh -c``; otherwise POSIX word split.

    Raises:
        InvalidInput: naming the argument.
    """
    _check_text(command, "command", required=True)
    _check_text(stdin, "stdin", required=False)
    overlay = validate_env_overlay(env)
    workdir = validate_cwd(cwd)
    if use_shell:
        argv = ["/bin/sh", "-c", command]
    else:
        try:
            argv = shlex.split(command, posix=True)
        except ValueError as exc:
            raise InvalidInput("command", f"cannot split into words: {exc}") from exc
    spec = ProcessSpec(
        argv=argv,
        env=build_child_env(overlay),
        cwd=workdir,
        stdin=stdin.encode() if stdin else None,
        merge_stderr=merge_stderr,
    )
    probe = "\n".join(
        part for part in (command, stdin, _env_probe(overlay), f"cwd={cwd}" if cwd else "") if part
    )
    call = CallText(
        shell=command if use_shell else None,
        argv=None if use_shell else tuple(argv),
        stdin=stdin,
        env=overlay,
        cwd=str(workdir) if workdir is not None else None,
    )
    return PreparedCommand(spec=spec, probe=probe, call=call)


def prepare_script(
    script: str, *, interpreter: str, strict: bool, env: object, cwd: str, merge_stderr: bool
) -> PreparedCommand:
    """Validate shell_script arguments; the script is fed on stdin to the interpreter."""
    _check_text(script, "script", required=True)
    if interpreter not in INTERPRETERS:
        raise InvalidInput("interpreter", f"must be one of {', '.join(INTERPRETERS)} (got {interpreter!r})")
    overlay = validate_env_overlay(env)
    workdir = validate_cwd(cwd)
    body = (STRICT_PRELUDE + script) if strict and interpreter in ("bash", "sh") else script
    if interpreter == "sh" and strict:
        # POSIX sh has no pipefail everywhere (dash before 0.5.11); keep -eu there.
        body = "set -eu\n" + script
    spec = ProcessSpec(
        argv=INTERPRETERS[interpreter],
        env=build_child_env(overlay),
        cwd=workdir,
        stdin=body.encode(),
        merge_stderr=merge_stderr,
    )
    probe = "\n".join(
        part
        for part in (f"interpreter={interpreter}", script, _env_probe(overlay), f"cwd={cwd}" if cwd else "")
        if part
    )
    call = CallText(
        shell=body,
        interpreter=ScriptLanguage(interpreter),
        env=overlay,
        cwd=str(workdir) if workdir is not None else None,
    )
    return PreparedCommand(spec=spec, probe=probe, call=call)
