"""The audit hash chain (docs/adr/0009-audit-sink.md): canonical JSON and one link of the chain.

Every chained record carries ``prev`` (the ``chain`` of the record before it, or
:data:`GENESIS` for the very first record ever written) and ``chain``::

    chain = sha256_hex(prev_ascii || canonical_json(record without "chain"))

The record hashed includes ``prev`` itself, so a record cannot be moved to another place in
the chain.

A chained line is written as exactly the bytes that were hashed: the canonical JSON of the
record without ``chain``, with ``,"chain":"<hex>"`` inserted before its closing brace
(:func:`chained_line`). So a verifier can hash the line's own bytes instead of encoding
the parsed record again (:func:`split_chained_line`); only lines holding characters the
JSON Lines writer escapes (DEL, C1 controls, U+2028, U+2029) differ from the canonical
bytes and need the slower re-encoding check. Older trails wrote keys in record order;
they still verify through that slower check. Canonical JSON is UTF-8, keys sorted at every level, compact separators, no
ASCII escaping, no NaN/Infinity. It is only defined for JSON-safe data: :func:`json_safe`
turns any record into that shape, and the writer applies it before hashing, so what is
hashed is exactly what is written and what a verifier parses back.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from enum import Enum

GENESIS = "0" * 64
"""The ``prev`` of the first record of a brand-new trail."""

CHAIN_FIELD = "chain"
PREV_FIELD = "prev"

_CHAIN_SHAPE = re.compile(r"[0-9a-f]{64}")
# Built once: json.dumps with these options would build an equal encoder on every call.
# No cycle check: what is encoded is JSON-safe data (json_safe builds a fresh tree, and recurses
# forever on a cycle before any encoding) or parsed JSON, which cannot hold a cycle; the check
# costs as much as the encoding itself. The bytes are the same either way.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)

type JsonValue = bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None


def canonical_json(record: Mapping[str, object]) -> bytes:
    """The canonical UTF-8 JSON encoding of a JSON-safe ``record``.

    Raises ``TypeError`` or ``ValueError`` when the record holds values JSON cannot
    represent (pass it through :func:`json_safe` first).
    """
    return _CANONICAL_ENCODER.encode(record).encode("utf-8")


def link(prev: str, record_without_chain: Mapping[str, object]) -> str:
    """The ``chain`` value of a record whose predecessor's ``chain`` is ``prev``.

    ``record_without_chain`` is the record as written, ``prev`` field included, ``chain``
    field excluded (a ``chain`` key present in the mapping is ignored).
    """
    if CHAIN_FIELD in record_without_chain:
        record_without_chain = {k: v for k, v in record_without_chain.items() if k != CHAIN_FIELD}
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(canonical_json(record_without_chain))
    return digest.hexdigest()


_CHAIN_SUFFIX_LENGTH = len(',"chain":"') + 64 + len('"}')


def chained_line(prev: str, record_without_chain: Mapping[str, object]) -> tuple[str, bytes]:
    """The ``chain`` of a JSON-safe record (``prev`` field included) and its line (no newline).

    The line is the canonical JSON that was hashed with the chain spliced in last, so the
    keys are sorted except ``chain``, which ends the object.
    """
    body = canonical_json(record_without_chain)
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(body)
    chain = digest.hexdigest()
    return chain, body[:-1] + b',"chain":"' + chain.encode("ascii") + b'"}'


def split_chained_line(line: bytes) -> tuple[bytes, str] | None:
    """For a line in the :func:`chained_line` layout: the hashed bytes and the chain; else None.

    Only the layout is checked here (a closing ``,"chain":"<64 hex>"}``), not the hash.
    """
    if len(line) <= _CHAIN_SUFFIX_LENGTH or not line.endswith(b'"}'):
        return None
    suffix = line[-_CHAIN_SUFFIX_LENGTH:]
    if not suffix.startswith(b',"chain":"'):
        return None
    chain = suffix[10:74].decode("ascii", "replace")
    if _CHAIN_SHAPE.fullmatch(chain) is None:
        return None
    return line[:-_CHAIN_SUFFIX_LENGTH] + b"}", chain


def is_chain_value(value: object) -> bool:
    """True for a 64-character lowercase hex string (the shape of ``prev`` and ``chain``)."""
    return isinstance(value, str) and _CHAIN_SHAPE.fullmatch(value) is not None


def json_safe(value: object) -> JsonValue:
    """A copy of ``value`` made only of JSON types, stable under a JSON round trip.

    Mappings become dicts with string keys, sequences (list, tuple, set) become lists,
    enums become their value, non-finite floats and unknown objects become their ``str``,
    and strings holding lone surrogates (undecodable bytes from ``os.fsdecode``) get them
    replaced by a visible ``\\udcXX`` escape so the record can be UTF-8 encoded.
    """
    if type(value) is str:  # exact types first: records are mostly these, and type() beats isinstance
        return value if value.isascii() else _utf8_safe(value)
    if type(value) is dict:
        return {
            key if type(key) is str and key.isascii() else json_key(key): json_safe(item)
            for key, item in value.items()
        }
    if type(value) in _PLAIN_TYPES:
        return value  # type: ignore[return-value]
    if type(value) is list:
        return [json_safe(item) for item in value]
    return _general(value)


_PLAIN_TYPES: frozenset[type] = frozenset({int, bool, type(None)})


def json_key(key: object) -> str:
    """A mapping key as :func:`json_safe` writes it: a string that can be UTF-8 encoded."""
    if type(key) is str and key.isascii():
        return key
    return _utf8_safe(key if isinstance(key, str) else str(key))


def _general(value: object) -> JsonValue:
    """json_safe for everything but the exact common types."""
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, str):
        return _utf8_safe(value)
    if isinstance(value, Mapping):
        return {json_key(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, set | frozenset):
        return [json_safe(item) for item in sorted(value, key=repr)]
    return _scalar(value)


def _scalar(value: object) -> JsonValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _utf8_safe(value if isinstance(value, str) else str(value))


def _utf8_safe(text: str) -> str:
    if type(text) is str and text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if type(text) is str else str.__str__(text)
