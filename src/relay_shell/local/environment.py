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
    env = _SERVER_ENVIRONMENT.copy() if extra_defaults is None else dict(os.environ)
    for name, value in {**NONINTERACTIVE_DEFAULTS, **(extra_defaults or {})}.items():
        env.setdefault(name, value)
    for name, override in overlay.items():
        if override is None:
            env.pop(name, None)
        else:
            env[name] = override
    return env


class _ServerEnvironment:
    """The server's environment (``os.environ``), decoded once and again only when it changed.

    Decoding ``os.environ`` costs one Python call per variable on every child; this keeps
    the bytes it last decoded and compares them (one C-level comparison), so a variable set
    while the server runs is still seen by the next child.
    """

    def __init__(self) -> None:
        self._cached: tuple[dict[bytes, bytes], dict[str, str]] | None = None
        """The bytes last decoded and their decoded copy (one attribute: threads read it too)."""

    def copy(self) -> dict[str, str]:
        """A fresh copy of the environment, as ``dict(os.environ)`` gives it."""
        raw = getattr(os.environ, "_data", None)
        if not isinstance(raw, dict):
            return dict(os.environ)
        cached = self._cached
        if cached is None or cached[0] != raw:
            cached = (dict(raw), dict(os.environ))
            self._cached = cached
        return dict(cached[1])


_SERVER_ENVIRONMENT = _ServerEnvironment()


def apply_overlay(env: Mapping[str, str], overlay: Mapping[str, str | None]) -> dict[str, str]:
    """A copy of ``env`` with ``overlay`` applied (a ``None`` value removes the variable).

    The executor uses it for the environment the classifier requires for a run (for a
    tier-0 ``git``: configuration that would run code switched off).
    """
    result = dict(env)
    for name, value in overlay.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


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
