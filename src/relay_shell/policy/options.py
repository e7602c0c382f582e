"""Command-line options read the way getopt_long reads them, and signal spellings.

* Short clusters are split (``-rf`` is ``-r -f``); an option that takes a value takes the
  rest of its cluster or the next word (``-n5``, ``-n 5``); an optional value is only
  attached (``sed -i.bak``).
* A long option may be abbreviated to any unambiguous prefix (``--in`` is ``--in-place``,
  ``--forc`` is ``--force``); an ambiguous prefix is read as *every* option it could be
  (getopt refuses it, so reading it as the worst candidate only rounds up).
* Options may follow operands (GNU permutation) unless the spec says otherwise; ``--``
  ends the options.
* A word that is not literal where an option could be makes the parse ``dynamic``: the
  caller then reads the command as its worst case.
"""

from __future__ import annotations

import signal as signal_module
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from relay_shell.policy.words import Word


@dataclass(frozen=True)
class OptionSpec:
    """The options of one command.

    ``short`` lists flag letters, ``short_values`` letters that take a value,
    ``short_optional`` letters with an optional attached value; the ``long_*`` sets do the
    same for long names (without ``--``). ``permute`` false stops at the first operand
    (POSIX, and commands whose operands are a command to run).
    """

    short: str = ""
    short_values: str = ""
    short_optional: str = ""
    long: frozenset[str] = frozenset()
    long_values: frozenset[str] = frozenset()
    long_optional: frozenset[str] = frozenset()
    permute: bool = True

    @property
    def long_names(self) -> frozenset[str]:
        return self.long | self.long_values | self.long_optional

    def resolve_long(self, name: str) -> list[str]:
        """The long option(s) ``name`` designates: exact match, else every prefix match."""
        names = self.long_names
        if name in names:
            return [name]
        return sorted(candidate for candidate in names if candidate.startswith(name)) if name else []


def spec(
    short: str = "",
    short_values: str = "",
    long: str = "",
    long_values: str = "",
    *,
    short_optional: str = "",
    long_optional: str = "",
    permute: bool = True,
) -> OptionSpec:
    """An :class:`OptionSpec` with long names given as space-separated strings."""
    return OptionSpec(
        short,
        short_values,
        short_optional,
        frozenset(long.split()),
        frozenset(long_values.split()),
        frozenset(long_optional.split()),
        permute,
    )


@dataclass(slots=True)
class Parsed:
    """Options (canonical ``-x`` or ``--name``, value) in order, operands, and what was unclear."""

    options: list[tuple[str, str | None]] = field(default_factory=list)
    operands: list[Word] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    dynamic: bool = False
    dynamic_values: list[str] = field(default_factory=list)
    abbreviated: bool = False

    def has(self, *names: str) -> bool:
        """Whether any of ``names`` (``-r``, ``--recursive``...) was given."""
        return any(option in names for option, _ in self.options)

    def values(self, *names: str) -> list[str]:
        """The values given to any of ``names``, in order (``""`` for a missing value)."""
        return [value or "" for option, value in self.options if option in names]

    @property
    def literal_operands(self) -> bool:
        return all(word.literal for word in self.operands)


def parse_options(words: Sequence[Word], option_spec: OptionSpec) -> Parsed:
    """Split ``words`` (the arguments, without the command name) into options and operands."""
    parsed = Parsed()
    index, count = 0, len(words)
    while index < count:
        word = words[index]
        if not word.literal:
            if word.may_be_option or word.may_split:
                parsed.dynamic = True
            parsed.operands.append(word)
            index += 1
            if not option_spec.permute:
                parsed.operands.extend(words[index:])
                break
            continue
        text = word.text
        if text == "--":
            parsed.operands.extend(words[index + 1 :])
            break
        if text.startswith("--"):
            index = _long(words, index, option_spec, parsed)
        elif text.startswith("-") and len(text) > 1:
            index = _short(words, index, option_spec, parsed)
        else:
            parsed.operands.append(word)
            index += 1
            if not option_spec.permute:
                parsed.operands.extend(words[index:])
                break
    return parsed


def _value_after(words: Sequence[Word], index: int, parsed: Parsed, option: str) -> str | None:
    if index >= len(words):
        return None
    if not words[index].literal:
        parsed.dynamic_values.append(option)
    return words[index].text


def _long(words: Sequence[Word], index: int, option_spec: OptionSpec, parsed: Parsed) -> int:
    name, equals, attached = words[index].text[2:].partition("=")
    candidates = option_spec.resolve_long(name)
    if not candidates:
        parsed.unknown.append("--" + name)
        return index + 1
    if candidates != [name]:
        parsed.abbreviated = True
    takes_value = any(candidate in option_spec.long_values for candidate in candidates)
    value: str | None = attached if equals else None
    if takes_value and not equals:
        value = _value_after(words, index + 1, parsed, "--" + candidates[0])
        index += 1
    for candidate in candidates:
        parsed.options.append(("--" + candidate, value))
    return index + 1


def _short(words: Sequence[Word], index: int, option_spec: OptionSpec, parsed: Parsed) -> int:
    text = words[index].text
    position = 1
    while position < len(text):
        letter = text[position]
        rest = text[position + 1 :]
        if letter in option_spec.short_values:
            if rest:
                parsed.options.append(("-" + letter, rest))
                return index + 1
            parsed.options.append(("-" + letter, _value_after(words, index + 1, parsed, "-" + letter)))
            return index + 2
        if letter in option_spec.short_optional:
            parsed.options.append(("-" + letter, rest or None))
            return index + 1
        if letter in option_spec.short:
            parsed.options.append(("-" + letter, None))
        else:
            parsed.unknown.append("-" + letter)
        position += 1
    return index + 1


# -- signals -----------------------------------------------------------------------------------

_SIGNAL_NUMBERS: dict[str, int] = {
    name.removeprefix("SIG"): int(number)
    for name, number in vars(signal_module).items()
    if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(number, signal_module.Signals)
}
_SIGNAL_NAMES: dict[int, str] = {}
for _name, _number in sorted(_SIGNAL_NUMBERS.items(), key=lambda item: len(item[0])):
    _SIGNAL_NAMES.setdefault(_number, _name)


def canonical_signal(text: str) -> str | None:
    """``KILL`` for ``9``, ``09``, ``KILL``, ``kill``, ``SIGKILL``, ``SigKill``; ``0`` for ``0``.

    Real-time signals come back as ``RTMIN+n``; None when the text names no signal.
    """
    spelled = text.strip().upper()
    if spelled.isdigit() and len(spelled) < 6:
        number = int(spelled)
        return "0" if number == 0 else _SIGNAL_NAMES.get(number, f"SIG{number}")
    spelled = spelled.removeprefix("SIG")
    if spelled in _SIGNAL_NUMBERS:
        return _SIGNAL_NAMES[_SIGNAL_NUMBERS[spelled]]
    if spelled.startswith(("RTMIN", "RTMAX")):
        return spelled
    return None


def signal_spellings(name: str) -> tuple[str, ...]:
    """Other spellings of a canonical signal name (for the deny list): ``KILL``, ``9``, ``SIGKILL``."""
    number = _SIGNAL_NUMBERS.get(name)
    spellings = [name, f"SIG{name}"]
    if number is not None:
        spellings.append(str(number))
    return tuple(spellings)


def first_operand_index(words: Sequence[Word], option_spec: OptionSpec) -> int | None:
    """Index of the first operand when options stop at it (a command after a wrapper's options).

    None when a non-literal word stands where an option or the command could be.
    """
    index, count = 0, len(words)
    while index < count:
        word = words[index]
        if not word.literal:
            return None if word.may_be_option or word.may_split else index
        text = word.text
        if text == "--":
            return index + 1
        if text.startswith("--") and len(text) > 2:
            name, equals, _ = text[2:].partition("=")
            candidates = option_spec.resolve_long(name)
            takes_value = any(candidate in option_spec.long_values for candidate in candidates)
            index += 2 if takes_value and not equals else 1
            continue
        if text.startswith("-") and len(text) > 1:
            index = _skip_short(text, index, option_spec)
            continue
        return index
    return count


def _skip_short(text: str, index: int, option_spec: OptionSpec) -> int:
    for position in range(1, len(text)):
        letter = text[position]
        if letter in option_spec.short_values:
            return index + (1 if position + 1 < len(text) else 2)
        if letter in option_spec.short_optional:
            return index + 1
    return index + 1


def letters(options: Iterable[tuple[str, str | None]]) -> set[str]:
    """The option names given, for membership tests."""
    return {option for option, _ in options}


def long_prefix(text: str, names: tuple[str, ...]) -> bool:
    """Whether ``text`` is a long option getopt_long could read as one of ``names`` (any
    unambiguous or ambiguous prefix: ambiguity rounds up)."""
    if not text.startswith("--") or len(text) < 3:
        return False
    given = text[2:].split("=", 1)[0]
    return any(name.startswith(given) for name in names)
