"""IP literals in canonical form: in targets and inside command text.

IPv4 literals are read the way ``inet_aton`` reads them (``0x7f000001``, ``2130706433``,
``127.1`` and ``0177.0.0.1`` are all ``127.0.0.1``); IPv6 literals come back compressed,
plus the embedded IPv4 address of ``::ffff:a.b.c.d`` (and of the deprecated ``::a.b.c.d``).
A deny rule written for ``127\\.0\\.0\\.1`` therefore sees every spelling. Host names are
never resolved.
"""

from __future__ import annotations

import ipaddress
import re

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TARGET_SEPARATORS = re.compile(r"[\s,]+")
_IPV4_PART = re.compile(r"0[xX][0-9A-Fa-f]{1,32}|0[0-7]{0,32}|[1-9][0-9]{0,32}")  # bounded for int()
# Candidates inside command text: runs of hex digits, dots, colons and x (IPv4 in any inet_aton
# spelling, IPv6, host:port); bounded so one candidate never costs more than a few hundred bytes.
_CANDIDATE = re.compile(r"\[[0-9A-Fa-f:.%]{2,64}\]|[0-9A-Fa-fxX.:]{1,64}")
MAX_TEXT_ADDRESSES = 256


def _host_of(target: str) -> str:
    """The host part of ``[scheme://][user@]host[:port][/path]``, ``[v6]:port`` or a bare IPv6."""
    rest = _SCHEME.sub("", target.strip())
    if _SCHEME.match(target.strip()):
        rest = rest.split("/", 1)[0]
    rest = rest.rpartition("@")[2]
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    if rest.count(":") == 1:
        return rest.partition(":")[0]
    return rest


def _ipv4_number(host: str) -> int | None:
    """The address ``inet_aton`` would read from ``host`` (``127.1``, ``0x7f000001``...), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(part) for part in parts):
        return None
    numbers = [
        int(part, 0) if part[:2].lower() == "0x" else int(part, 8 if part[0] == "0" else 10) for part in parts
    ]
    *leading, last = numbers
    if any(number > 0xFF for number in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    value = 0
    for number in leading:
        value = (value << 8) | number
    return (value << (8 * (5 - len(numbers)))) | last


def ip_forms(host: str) -> list[str]:
    """Canonical spellings of one host if it is an IP literal, else []."""
    number = _ipv4_number(host)
    if number is not None:
        return [str(ipaddress.IPv4Address(number))]
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return []
    forms = [str(address)]
    embedded = address.ipv4_mapped
    if embedded is None and int(address) >> 32 == 0 and int(address) > 1:
        embedded = ipaddress.IPv4Address(int(address))  # deprecated IPv4-compatible ::a.b.c.d
    if embedded is not None:
        forms.append(str(embedded))
    return forms


def canonical_ip_forms(target: str) -> list[str]:
    """Canonical dotted / compressed spellings of the IP literals in ``target``.

    ``target`` may be ``host``, ``user@host:port``, ``[v6]:port``, ``ssh://user@host:port``
    or several of those separated by commas or spaces (a jump chain). Names that are not IP
    literals give [].
    """
    forms: list[str] = []
    for part in _TARGET_SEPARATORS.split(target):
        if part:
            forms.extend(form for form in ip_forms(_host_of(part)) if form not in forms)
    return forms


def addresses_in_text(text: str) -> list[str]:
    """Canonical forms of the IP literals that appear inside ``text`` (at most 256).

    Finds them inside words such as ``/dev/tcp/0x7f000001/80``, ``http://127.1:8080/``,
    ``user@[::ffff:7f00:1]`` or ``2130706433``. Only candidates with a dot, a colon or an
    ``0x`` prefix, or all-digit numbers of 8 to 10 digits, are read, so ordinary numbers and
    words do not turn into addresses. Linear in ``len(text)``.
    """
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        raw = match.group()
        candidate = raw[1:-1] if raw.startswith("[") else raw
        if not _plausible(candidate):
            continue
        for piece in (*_pieces(candidate), candidate.strip(".:")):
            if not _plausible(piece):
                continue
            for form in ip_forms(piece):
                if form not in found:
                    found.append(form)
                    if len(found) >= MAX_TEXT_ADDRESSES:
                        return found
    return found


def _plausible(candidate: str) -> bool:
    if not candidate:
        return False
    if "." in candidate or ":" in candidate or candidate[:2].lower() == "0x":
        return True
    return candidate.isdigit() and 8 <= len(candidate) <= 10


def _pieces(candidate: str) -> list[str]:
    """The candidate itself, and for ``host:port`` (one colon) the host part."""
    pieces = [candidate]
    if candidate.count(":") == 1:
        pieces.append(candidate.partition(":")[0])
    return pieces
