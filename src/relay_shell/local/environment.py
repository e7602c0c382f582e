"""The environment and working directory a local child gets (docs/tools.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from relay_shell.errors import InvalidInput

NONINTERACTIVE_DEFAULTS: Mapping[str, str] = {
    "DEBIAN_FRONTEND": "noninteractive",
    "GIT_TERMINAL_PROMPT": "0",
    "LANG": "C.UTF-8",
}

MAX_ENV_ENTRIES = 512


def validate_env_overlay(overlay: object, *, argument: str = "env") -> dict[str, str | None]:
    """Check an ``env`` argument: an object of NAME -> string or null (null unsets).

    Raises:
        InvalidInput: not an object, a bad name, or a value that is not a string or null.
    """
    if overlay is None:
        return {}
    if not isinstance(overlay, Mapping):
        raise InvalidInput(argument, "must be an object mapping variable names to strings (or null to unset)")
    if len(overlay) > MAX_ENV_ENTRIES:
        raise InvalidInput(argument, f"at most {MAX_ENV_ENTRIES} variables")
    checked: dict[str, str | None] = {}
    for name, value in overlay.items():
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise InvalidInput(argument, f"{name!r} is not a valid variable name")
        if value is not None and not isinstance(value, str):
            raise InvalidInput(
                argument, f"value of {name} must be a string or null, not {type(value).__name__}"
            )
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(argument, f"value of {name} contains a NUL byte")
        checked[name] = value
    return checked


def build_child_env(
    overlay: Mapping[str, str | None], *, extra_defaults: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment, plus non-interactive defaults where unset, plus the overlay.

    A ``None`` value in the overlay removes the variable.
    """
    env = dict(os.environ)
    for name, value in {**NONINTERACTIVE_DEFAULTS, **(extra_defaults or {})}.items():
        env.setdefault(name, value)
    for name, override in overlay.items():
        if override is None:
            env.pop(name, None)
        else:
            env[name] = override
    return env


def validate_cwd(cwd: str, *, argument: str = "cwd") -> Path | None:
    """``""`` means the server's working directory; otherwise an existing directory."""
    if not cwd:
        return None
    path = Path(cwd).expanduser()
    if "\x00" in cwd:
        raise InvalidInput(argument, "contains a NUL byte")
    if not path.is_dir():
        raise InvalidInput(argument, f"{cwd!r} is not an existing directory")
    return path
