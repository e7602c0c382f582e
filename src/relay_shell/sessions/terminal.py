"""Terminal vocabulary shared by the session registry, both PTY transports and the session tools.

Signal names (:data:`SIGNALS`, :func:`parse_signal`), named keys (:data:`KEYS`,
:func:`keys_to_bytes`), the terminal size bounds (:func:`validate_terminal_size`), and turning
terminal output into text: :func:`strip_ansi` and :func:`decode_chunk`, which decodes a
stream chunk by chunk without splitting a UTF-8 character or an escape sequence.
"""

from __future__ import annotations

import re
import signal as signal_module
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from relay_shell.capture import decode_utf8_prefix
from relay_shell.errors import InvalidInput

MAX_TERMINAL_COLS = 1000
MAX_TERMINAL_ROWS = 1000

# ---------------------------------------------------------------------------------------
# Signals and keys

_SIGNAL_NAMES = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU",
    "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
)  # fmt: skip
SIGNALS: Mapping[str, int] = MappingProxyType(
    {
        name: int(getattr(signal_module, f"SIG{name}"))
        for name in _SIGNAL_NAMES
        if hasattr(signal_module, f"SIG{name}")
    }
)
_SIGNALS_BY_NUMBER = {number: name for name, number in SIGNALS.items()}


def parse_signal(name: str) -> str:
    """The canonical name ("INT") for ``"INT"``, ``"SIGINT"``, ``"int"`` or ``"2"``.

    Raises:
        InvalidInput: (argument ``signal``) not a signal name or number this server knows.
    """
    text = name.strip().upper() if isinstance(name, str) else ""
    if text.isdigit() and int(text) in _SIGNALS_BY_NUMBER:
        return _SIGNALS_BY_NUMBER[int(text)]
    text = text.removeprefix("SIG")
    if text in SIGNALS:
        return text
    raise InvalidInput("signal", f"unknown signal {name!r} (known: {', '.join(SIGNALS)})")


_NAMED_KEYS: dict[str, bytes] = {
    "Enter": b"\r",
    "Tab": b"\t",
    "Escape": b"\x1b",
    "Backspace": b"\x7f",
    "Up": b"\x1b[A",
    "Down": b"\x1b[B",
    "Right": b"\x1b[C",
    "Left": b"\x1b[D",
    "Home": b"\x1b[H",
    "End": b"\x1b[F",
    "PageUp": b"\x1b[5~",
    "PageDown": b"\x1b[6~",
    "Insert": b"\x1b[2~",
    "Delete": b"\x1b[3~",
    "S-Tab": b"\x1b[Z",
    # xterm: F1-F4 are SS3 sequences, F5-F12 numbered CSI ~ sequences (16 and 22 are unused).
    **{f"F{number}": f"\x1bO{final}".encode() for number, final in zip(range(1, 5), "PQRS", strict=True)},
    **{
        f"F{number}": f"\x1b[{code}~".encode()
        for number, code in zip(range(5, 13), (15, 17, 18, 19, 20, 21, 23, 24), strict=True)
    },
}
_CONTROL_KEYS: dict[str, bytes] = {
    **{f"C-{chr(code)}": bytes([code - 0x60]) for code in range(ord("a"), ord("z") + 1)},
    "C-Space": b"\x00",
    "C-\\": b"\x1c",
    "C-]": b"\x1d",
}
_META_KEYS: dict[str, bytes] = {
    # Alt sends ESC before the key (xterm's metaSendsEscape, the usual terminal setting).
    **{f"M-{chr(code)}": b"\x1b" + bytes([code]) for code in range(0x21, 0x7F)},
    **{f"M-{name}": b"\x1b" + value for name, value in _NAMED_KEYS.items()},
    "M-Space": b"\x1b ",
}
KEYS: Mapping[str, bytes] = MappingProxyType({**_NAMED_KEYS, **_CONTROL_KEYS, **_META_KEYS})
"""Every key name ``session_send`` accepts and the bytes it types: the whole key vocabulary, in one table.

Names are matched exactly, then case-insensitively, except the character of ``M-<char>``
(``M-b`` and ``M-B`` are different keys).
"""
_KEYS_FOLDED = {
    name.lower(): value for name, value in KEYS.items() if not (name.startswith("M-") and len(name) == 3)
}
_KNOWN_KEYS_TEXT = (
    ", ".join(_NAMED_KEYS).replace("F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11, F12", "F1 .. F12")
    + ", C-a .. C-z, C-Space, C-\\, C-], M-<character or key> (Alt)"
)


def _key_bytes(key: str) -> bytes | None:
    value = KEYS.get(key)
    if value is None and len(key) == 3 and key[:2].lower() == "m-":
        value = KEYS.get("M-" + key[2])  # "m-x" is M-x; the character keeps its case
    return value if value is not None else _KEYS_FOLDED.get(key.lower())


def keys_to_bytes(keys: Sequence[str]) -> bytes:
    """The bytes a terminal sends for the named keys, in order (see :data:`KEYS` for the names).

    Raises:
        InvalidInput: (argument ``keys``) not a list of strings, or an unknown key name.
    """
    if isinstance(keys, str | bytes):
        raise InvalidInput("keys", 'must be a list of key names, for example ["C-c"]')
    sent = bytearray()
    for key in keys:
        value = _key_bytes(key) if isinstance(key, str) else None
        if value is None:
            raise InvalidInput("keys", f"unknown key {key!r} (known: {_KNOWN_KEYS_TEXT})")
        sent += value
    return bytes(sent)


# ---------------------------------------------------------------------------------------
# Terminal size


def validate_terminal_size(cols: int, rows: int) -> None:
    """Raises InvalidInput (``cols``/``rows``) outside 1..MAX_TERMINAL_COLS/ROWS."""
    for argument, value, ceiling in (("cols", cols, MAX_TERMINAL_COLS), ("rows", rows, MAX_TERMINAL_ROWS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
            raise InvalidInput(argument, f"must be an integer from 1 to {ceiling}, not {value!r}")


# ---------------------------------------------------------------------------------------
# ANSI stripping and decoding

# Every alternative starts at ESC (or is one control character) and its repeated classes
# exclude ESC, so a failed attempt stops at the next ESC: the scan is linear in the input.
_ESCAPE = re.compile(
    r"""
      \x1b\[ [0-?]* [ -/]* [@-~]            # CSI: colours, cursor motion, modes
    | \x1b\] [^\x07\x1b]* (?:\x07|\x1b\\)   # OSC: window title, hyperlinks (BEL or ST)
    | \x1b[PX^_] [^\x07\x1b]* \x1b\\        # DCS, SOS, PM, APC strings
    | \x1b [ -/]* [0-~]                     # charset designation (ESC ( B) and other escapes
    | \x1b                                  # a stray ESC
    | [\x00\x07\x0e\x0f]                    # NUL, BEL, shift out / shift in
    """,
    re.VERBOSE,
)
# Carriage returns next to a newline (a PTY turns "\n" into "\r\n"; shells add "\r" after
# it): no-ops on screen. The look-behinds make starts inside a run of "\r" fail at once.
_REDUNDANT_CR = re.compile(r"(?<!\r)\r+(?=\n)|(?<=\n)\r+")
# An escape sequence cut off at the end of a chunk (held back until the rest arrives).
_INCOMPLETE_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b]*\x1b?|[ -/]*)\Z")
_MAX_HELD_ESCAPE = 512
_MAX_HELD_CR = 64


def strip_ansi(text: str) -> str:
    """Terminal output as plain text, in linear time.

    Removes CSI, OSC, DCS/SOS/PM/APC and charset escape sequences, stray ESC, NUL, BEL and
    shift characters, and carriage returns right before or after a newline (so ``\\r\\n``
    becomes ``\\n``).
    Idempotent; text without escapes or carriage returns is returned unchanged.
    """
    return _REDUNDANT_CR.sub("", _ESCAPE.sub("", text))


def _held_tail_length(text: str) -> int:
    """How many trailing characters to hold back so stripping never cuts a sequence in two."""
    incomplete = _INCOMPLETE_ESCAPE.search(text, max(0, len(text) - _MAX_HELD_ESCAPE))
    if incomplete is not None:
        return len(text) - incomplete.start()
    return min(_MAX_HELD_CR, len(text) - len(text.rstrip("\r")))


def decode_chunk(carry: bytes, chunk: bytes, *, strip: bool, final: bool) -> tuple[str, bytes]:
    """Decode ``carry + chunk``; return the text and the bytes to carry to the next call.

    Never splits a UTF-8 character; when stripping, also holds back an escape sequence or a
    ``\\r`` run cut at the end. ``final`` flushes everything (the output is over).
    """
    data = carry + chunk
    if final:
        text, rest = data.decode("utf-8", errors="replace"), b""
    else:
        text, rest = decode_utf8_prefix(data)
        held = _held_tail_length(text) if strip else 0
        if held:
            text, rest = text[:-held], text[-held:].encode() + rest
    return (strip_ansi(text) if strip else text), rest


def leading_continuation_bytes(data: bytearray) -> int:
    """How many UTF-8 continuation bytes (at most 3) start ``data``: the tail of a cut character."""
    count = 0
    while count < min(3, len(data)) and 0x80 <= data[count] < 0xC0:
        count += 1
    return count
