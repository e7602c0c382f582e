"""Time, byte and count bounds: one clamping rule for every bounded number of a call.

Omitted means the configured default, above the ceiling is clamped (and the result says so),
zero, negative or non-numeric is ``invalid``. Output collection itself lives in
:mod:`relay_shell.capture`.
"""

from __future__ import annotations

import math
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
    """Apply SPEC §3: omitted -> default, above the ceiling -> clamped, <= 0 -> invalid."""
    if requested is None:
        return Clamped(settings.default_timeout, False, None)
    if isinstance(requested, bool) or not isinstance(requested, int | float):
        raise InvalidInput(argument, "must be a number of seconds")
    if math.isnan(requested) or requested <= 0:
        raise InvalidInput(argument, f"must be greater than 0 seconds (got {requested})")
    if requested > settings.max_timeout:
        return Clamped(settings.max_timeout, True, float(requested))
    return Clamped(float(requested), False, float(requested))


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
