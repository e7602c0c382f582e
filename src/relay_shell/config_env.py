"""Where each ``RELAY_SHELL_*`` value comes from, and the refusal of names no setting reads.

The server reads ``RELAY_SHELL_*`` variables from the process environment and from a
``.env`` file in the working directory, case-insensitively (the environment wins). A
misspelled name would otherwise be ignored without a word, and the server would run with
the default (``RELAY_SHELL_POLICY_MOD=guarded`` would serve in ``open`` mode), so every
``RELAY_SHELL_*`` name that is not a setting is a configuration error naming the closest
known name. ``RELAY_SHELL_EDGE_*`` is the one exempt family: those values parameterise the
TLS edge (``deploy/install-edge.sh``) and may live in the same env file.

Problems carry the source of the value (``environment`` or ``.env``) so an operator knows
which file or unit to fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

from relay_shell.errors import ConfigError

ENV_PREFIX = "RELAY_SHELL_"
EXEMPT_PREFIX = ENV_PREFIX + "EDGE_"
DOTENV_DEFAULT = ".env"
# difflib ratio above which a known name is offered as the intended spelling
SUGGEST_CUTOFF = 0.6
# a name longer than this is cut in messages (an environment can hold anything)
NAME_SHOWN_MAX = 120

Source = Literal["environment", ".env"]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    ``variable`` is the full variable name as the operator wrote it (or ``configuration``
    for a rule that spans several variables); ``source`` says where its value came from,
    ``None`` when it was passed in code or spans several variables.
    """

    variable: str
    message: str
    source: Source | None = None

    def __str__(self) -> str:
        where = f" (from {'the environment' if self.source == 'environment' else '.env'})"
        return f"{self.variable}{where if self.source else ''}: {self.message}"


class SettingsInvalid(ConfigError):
    """The configuration cannot be used; ``problems`` lists every reason, one per variable."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class ConfigSources:
    """The ``RELAY_SHELL_*`` entries of the environment and of the ``.env`` file, names as written."""

    environment: Mapping[str, str]
    dotenv: Mapping[str, str | None]
    dotenv_path: Path | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str], env_file: str | Path | None) -> ConfigSources:
        """Collect the prefixed names of ``environ`` and of ``env_file`` (when it is a regular file).

        Raises:
            SettingsInvalid: the ``.env`` file exists but cannot be read or decoded.
        """
        environment = {name: value for name, value in environ.items() if _prefixed(name)}
        path = Path(env_file).expanduser() if env_file is not None else None
        if path is None or not path.is_file():
            return cls(environment, {}, None)
        try:
            entries = dotenv_values(path, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem = ConfigProblem(str(path), f"cannot read the .env file: {exc}", ".env")
            raise SettingsInvalid([problem]) from exc
        dotenv = {name: value for name, value in entries.items() if _prefixed(name)}
        return cls(environment, dotenv, path)

    def source_of(self, field_name: str) -> Source | None:
        """Where the value of ``field_name`` came from (the environment wins over ``.env``, as in the loader)."""
        wanted = (ENV_PREFIX + field_name).upper()
        if any(name.upper() == wanted for name in self.environment):
            return "environment"
        if any(name.upper() == wanted for name in self.dotenv):
            return ".env"
        return None

    def unknown(self, field_names: Iterable[str]) -> list[ConfigProblem]:
        """One problem per ``RELAY_SHELL_*`` name (other than ``RELAY_SHELL_EDGE_*``) no setting reads."""
        known = sorted((ENV_PREFIX + name).upper() for name in field_names)
        problems = []
        seen: set[tuple[str, Source]] = set()
        written: list[tuple[str, Source]] = [(name, "environment") for name in self.environment]
        written += [(name, ".env") for name in self.dotenv]
        for name, source in written:
            upper = name.upper()
            if upper in known or upper.startswith(EXEMPT_PREFIX) or (upper, source) in seen:
                continue
            seen.add((upper, source))
            problems.append(ConfigProblem(_shown(name), _unknown_message(upper, known), source))
        return problems


def _prefixed(name: str) -> bool:
    return name.upper().startswith(ENV_PREFIX)


def _shown(name: str) -> str:
    return name if len(name) <= NAME_SHOWN_MAX else name[:NAME_SHOWN_MAX] + "..."


def closest_known(name: str, known: Iterable[str]) -> tuple[str, float]:
    """The known name most like ``name`` (compared without the shared prefix) and its difflib ratio."""
    suffix = name.upper().removeprefix(ENV_PREFIX)[:NAME_SHOWN_MAX]
    best, best_ratio = "", -1.0
    for candidate in known:
        ratio = difflib.SequenceMatcher(None, suffix, candidate.removeprefix(ENV_PREFIX)).ratio()
        if ratio > best_ratio:
            best, best_ratio = candidate, ratio
    return best, best_ratio


def _unknown_message(upper: str, known: list[str]) -> str:
    best, ratio = closest_known(upper, known)
    if ratio >= SUGGEST_CUTOFF:
        return f"unknown variable; did you mean {best}?"
    return f"unknown variable (the closest known name is {best}; every variable is listed in .env.example)"
