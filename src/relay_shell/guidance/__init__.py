"""Model-facing prose, kept as package data: server instructions, tool descriptions, the guide."""

from __future__ import annotations

import functools
import re
from importlib import resources

_SECTION = re.compile(r"^## (\S+)\s*$", re.MULTILINE)


@functools.cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def instructions() -> str:
    """The short selection guide sent at initialize."""
    return _read("instructions.md").strip()


def operating_guide() -> str:
    """The long-form guide served as the ``operating_guide`` prompt."""
    return _read("operating_guide.md").strip()


@functools.cache
def _descriptions() -> dict[str, str]:
    text = _read("tools.md")
    parts = _SECTION.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def tool_description(name: str) -> str:
    """The description of one tool; a missing entry is a packaging bug and fails loudly."""
    try:
        return _descriptions()[name]
    except KeyError:
        raise LookupError(f"no description for tool {name!r} in guidance/tools.md") from None
