"""Time, byte and count bounds: one clamping rule for every bounded number of a call.

Omitted means the configured default, above the ceiling is clamped (and the result says so),
zero, negative or non-numeric is ``invalid``. Input text is size-checked before anything
scans it (:func:`check_input_size`). Output collection itself lives in
:mod:`relay_shell.capture`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from relay_shell.config import Settings
from relay_shell.errors import InvalidInput

MIN_OUTPUT_BUDGET = 1024


@dataclass(frozen=True)
class Clamped[T]:
    """A bounded value and whether it was lowered to the ceiling."""

    value: T
    clamped: bool
    requested: T | None


def clamp_timeout(
    requested: float | None, settings: Settings, *, argument: str = "timeout"
) -> Clamped[float]:
    """One rule for every bound: omitted -> default, above the ceiling -> clamped, <= 0 -> invalid."""
    if requested is None:
        return Clamped(settings.default_timeout, False, None)
    if isinstance(requested, bool) or not isinstance(requested, int | float):
        raise InvalidInput(argument, "must be a number of seconds")
    if math.isnan(requested) or requested <= 0:
        raise InvalidInput(argument, f"must be greater than 0 seconds (got {requested})")
    if requested > settings.max_timeout:
        return Clamped(settings.max_timeout, True, float(requested))
    return Clamped(float(requested), False, float(requested))


def yield_after_seconds(requested: float | None, settings: Settings) -> float | None:
    """``yield_after``: omitted -> ``RELAY_SHELL_YIELD_AFTER``; ``0`` -> never yield (``None``).

    A value beyond the call's timeout simply never yields. Negative, infinite, NaN or
    non-numeric is ``invalid`` naming ``yield_after``.
    """
    value = settings.yield_after if requested is None else requested
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("yield_after", "must be a number of seconds (0 = never yield)")
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(
            "yield_after", f"must be 0 (never yield) or a positive number of seconds (got {value})"
        )
    return None if value == 0 else float(value)


def clamp_output(requested: int | None, settings: Settings, *, argument: str = "max_output") -> Clamped[int]:
    """Per-call output budget in ``[1024, MAX_OUTPUT_HARD]``, default ``MAX_OUTPUT``."""
    if requested is None:
        return Clamped(settings.max_output, False, None)
    if isinstance(requested, bool) or not isinstance(requested, int):
        raise InvalidInput(argument, "must be a whole number of bytes")
    if requested <= 0:
        raise InvalidInput(argument, f"must be greater than 0 bytes (got {requested})")
    if requested < MIN_OUTPUT_BUDGET:
        return Clamped(MIN_OUTPUT_BUDGET, True, requested)
    if requested > settings.max_output_hard:
        return Clamped(settings.max_output_hard, True, requested)
    return Clamped(requested, False, requested)


def clamp_count(requested: int | None, default: int, ceiling: int, *, argument: str) -> Clamped[int]:
    """A bounded count (lines, hosts, concurrency): >= 1, clamped to ``ceiling``."""
    if requested is None:
        return Clamped(min(default, ceiling), False, None)
    if isinstance(requested, bool) or not isinstance(requested, int):
        raise InvalidInput(argument, "must be a whole number")
    if requested < 1:
        raise InvalidInput(argument, f"must be at least 1 (got {requested})")
    if requested > ceiling:
        return Clamped(ceiling, True, requested)
    return Clamped(requested, False, requested)


UTF8_MAX_BYTES_PER_CHAR = 4


def utf8_length_over(text: str, limit: int) -> int | None:
    """The UTF-8 length of ``text`` when it is over ``limit`` bytes, else None.

    Decided from the character count alone whenever it can be (a character is 1 to 4 bytes),
    so a huge string is refused without being encoded or scanned.
    """
    if len(text) > limit:
        return len(text)  # at least this many bytes; exact enough to refuse
    if len(text) * UTF8_MAX_BYTES_PER_CHAR <= limit:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else None


def check_input_size(
    arguments: Mapping[str, object], limit: int, *, variable: str = "RELAY_SHELL_MAX_INPUT_BYTES"
) -> None:
    """Refuse an argument whose text is larger than ``limit`` bytes, before anything scans it.

    Strings are measured where they are: top-level, inside lists and as values of objects
    (an ``env`` overlay). The check is linear in the number of values, never in their size.

    Raises:
        InvalidInput: naming the argument (``env.NAME`` or ``keys[3]`` inside one).
    """
    for name, value in arguments.items():
        for where, text in _strings(str(name), value, depth=0):
            size = utf8_length_over(text, limit)
            if size is not None:
                raise InvalidInput(
                    where, f"{size} bytes or more, over the input limit of {limit} bytes ({variable})"
                )


def _strings(where: str, value: object, depth: int) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(where, value)]
    if depth >= 4:
        return []
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found.extend(_strings(f"{where}.{key}", item, depth + 1))
            if isinstance(key, str):
                found.append((f"{where} (a key)", key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(_strings(f"{where}[{index}]", item, depth + 1))
    return found
