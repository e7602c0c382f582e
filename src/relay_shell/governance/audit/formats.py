"""Audit line formats (docs/adr/0009-audit-sink.md): JSON Lines, ArcSight CEF and IBM QRadar LEEF 1.0.

Every encoder returns exactly one line without its newline, whatever the record holds:
no raw CR, LF or other line-breaking character ever reaches the output, and no value can
forge a header field, an extension key or a second record.

CEF::

    CEF:0|relay-shell|relay-shell|<version>|<tool>|<tool> <outcome>|<severity>|k1=v1 k2=v2

Header fields escape ``\\`` and ``|``; extension values escape ``\\`` and ``=``. LEEF::

    LEEF:1.0|relay-shell|relay-shell|<version>|<tool>|k1=v1<TAB>k2=v2

Header fields escape ``\\`` and ``|``; attribute values escape ``\\``, ``=`` and tab. In
both, CR, LF and tab become ``\\r``, ``\\n``, ``\\t`` and any other control or line-breaking
character (C0, DEL, C1, U+2028, U+2029) becomes ``\\xHH`` / ``\\uHHHH``; because the
backslash itself is escaped, decoding is unambiguous (:func:`from_cef`, :func:`from_leef`).

Extension keys are the record's field names with anything outside ``[A-Za-z0-9_]``
replaced by ``_``. String values are written as is; every other value (numbers, ``args``
dicts, lists) as compact JSON. CEF and LEEF carry no hash chain: the chain is defined over
JSON records only, and these formats exist to feed a SIEM, which keeps its own integrity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import relay_shell
from relay_shell.governance.audit.chain import json_safe

VENDOR = "relay-shell"
PRODUCT = "relay-shell"

INTEGER_FIELDS = frozenset({"seq", "tier", "exit_code", "duration_ms", "output_len", "stream_len"})
"""Fields decoded back to ``int`` by :func:`from_cef` / :func:`from_leef` when they look like one."""

_SEVERITY_BY_TIER = {0: 1, 1: 3, 2: 6, 3: 9}
_UNKNOWN_SEVERITY = 5

# Characters that some reader treats as a line break or that a terminal interprets.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# JSON leaves these raw with ensure_ascii=False; some readers split lines on them (U+0085,
# U+2028, U+2029) or a terminal acts on them (DEL, C1). They only occur inside strings.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.DOTALL)
_UNESCAPE_NAMED = {"n": "\n", "r": "\r", "t": "\t"}
# Built once: json.dumps with these options would build an equal encoder on every call. No cycle
# check: it only encodes JSON-safe copies or parsed JSON (see chain.py); same bytes, half the time.
_JSONL_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


def to_jsonl(record: Mapping[str, object]) -> str:
    """One compact JSON object (UTF-8, ``ensure_ascii=False``), keys in record order.

    DEL, C1 controls, U+2028 and U+2029 are written as ``\\uXXXX`` escapes so that no
    reader splits the line and no terminal acts on it.
    """
    return dumps_jsonl(json_safe(record))


def dumps_jsonl(record: object) -> str:
    """:func:`to_jsonl` for a record already made JSON-safe (no copy is taken)."""
    return escape_line_breakers(_JSONL_ENCODER.encode(record))


def escape_line_breakers(text: str) -> str:
    """``text`` with DEL, C1 controls, U+2028 and U+2029 written as ``\\uXXXX`` escapes.

    Only valid for JSON text, where these characters can only occur inside strings.
    """
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_UNSAFE.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def to_cef(record: Mapping[str, object]) -> str:
    """One CEF:0 line for ``record`` (see the module docstring for the mapping)."""
    tool = _text(record.get("tool", "unknown"))
    outcome = _text(record.get("outcome", ""))
    header = [
        "CEF:0",
        _escape_header(VENDOR),
        _escape_header(PRODUCT),
        _escape_header(relay_shell.__version__),
        _escape_header(tool),
        _escape_header(f"{tool} {outcome}".strip()),
        str(_severity(record.get("tier"))),
    ]
    extension = " ".join(f"{key}={_escape_value(value, '=')}" for key, value in _fields(record))
    return "|".join(header) + "|" + extension


def to_leef(record: Mapping[str, object]) -> str:
    """One LEEF:1.0 line for ``record``, tab-delimited attributes."""
    header = [
        "LEEF:1.0",
        _escape_header(VENDOR),
        _escape_header(PRODUCT),
        _escape_header(relay_shell.__version__),
        _escape_header(_text(record.get("tool", "unknown"))),
    ]
    attributes = "\t".join(f"{key}={_escape_value(value, '=')}" for key, value in _fields(record))
    return "|".join(header) + "|" + attributes


def from_cef(line: str) -> dict[str, object] | None:
    """Decode the extension of a line written by :func:`to_cef`; None if it is not one.

    Values come back as strings, except :data:`INTEGER_FIELDS` that hold an integer.
    """
    parts = _split_header(line, 7)
    if parts is None or parts[0] != "CEF:0":
        return None
    extension = parts[7]
    record: dict[str, object] = {}
    delimiters = _unescaped_positions(extension, "=")
    key_start = 0
    for index, position in enumerate(delimiters):
        key = extension[key_start:position]
        if not key or not _is_key(key):
            return None
        if index + 1 < len(delimiters):
            value_end = extension.rfind(" ", position + 1, delimiters[index + 1])
            if value_end < 0:
                return None
        else:
            value_end = len(extension)
        record[key] = _typed(key, _unescape(extension[position + 1 : value_end]))
        key_start = value_end + 1
    return record


def from_leef(line: str) -> dict[str, object] | None:
    """Decode the attributes of a line written by :func:`to_leef`; None if it is not one."""
    parts = _split_header(line, 5)
    if parts is None or parts[0] != "LEEF:1.0":
        return None
    record: dict[str, object] = {}
    if not parts[5]:
        return record
    for attribute in parts[5].split("\t"):
        delimiters = _unescaped_positions(attribute, "=")
        if not delimiters or not _is_key(attribute[: delimiters[0]]):
            return None
        key = attribute[: delimiters[0]]
        record[key] = _typed(key, _unescape(attribute[delimiters[0] + 1 :]))
    return record


def _fields(record: Mapping[str, object]) -> list[tuple[str, object]]:
    """Record items with keys made safe and unique (a clash gets a ``_2``, ``_3``... suffix)."""
    seen: set[str] = set()
    fields: list[tuple[str, object]] = []
    for raw_key, value in record.items():
        base = _KEY_CHARS.sub("_", str(raw_key)) or "_"
        key, suffix = base, 2
        while key in seen:
            key, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(key)
        fields.append((key, value))
    return fields


def _severity(tier: object) -> int:
    if isinstance(tier, int) and not isinstance(tier, bool):
        return _SEVERITY_BY_TIER.get(tier, _UNKNOWN_SEVERITY)
    return _UNKNOWN_SEVERITY


def _text(value: object) -> str:
    """A value as text: strings as is, anything else as compact JSON."""
    safe = json_safe(value)
    return safe if isinstance(safe, str) else dumps_jsonl(safe)


def _escape_controls(text: str) -> str:
    return _CONTROL.sub(_control_escape, text)


def _control_escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _escape_header(text: str) -> str:
    return _escape_controls(text.replace("\\", "\\\\").replace("|", "\\|"))


def _escape_value(value: object, delimiter: str) -> str:
    text = _text(value).replace("\\", "\\\\").replace(delimiter, "\\" + delimiter)
    return _escape_controls(text)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(_unescape_one, text)


def _unescape_one(match: re.Match[str]) -> str:
    token = match.group(1)
    if len(token) > 1:
        return chr(int(token[1:], 16))
    return _UNESCAPE_NAMED.get(token, token)


def _unescaped_positions(text: str, char: str) -> list[int]:
    """Indexes of ``char`` in ``text`` that are not escaped by a backslash."""
    positions: list[int] = []
    index = 0
    while index < len(text):
        current = text[index]
        if current == "\\":
            index += 2
            continue
        if current == char:
            positions.append(index)
        index += 1
    return positions


def _split_header(line: str, header_fields: int) -> list[str] | None:
    """Split on the first ``header_fields`` unescaped ``|``; the rest is the last item."""
    bars = _unescaped_positions(line, "|")
    if len(bars) < header_fields:
        return None
    parts: list[str] = []
    start = 0
    for bar in bars[:header_fields]:
        parts.append(_unescape(line[start:bar]))
        start = bar + 1
    parts.append(line[start:])
    return parts


def _is_key(key: str) -> bool:
    return bool(key) and _KEY_CHARS.search(key) is None


def _typed(key: str, value: str) -> object:
    if key in INTEGER_FIELDS and re.fullmatch(r"-?[0-9]{1,30}", value) and str(int(value)) == value:
        return int(value)
    return value


def parse_line(line: bytes) -> dict[str, object] | None:
    """Decode one audit line in any of the three formats; None when it is not a record."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    if text.startswith("CEF:"):
        return from_cef(text)
    if text.startswith("LEEF:"):
        return from_leef(text)
    return None
