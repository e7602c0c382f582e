"""Forward specs and what a forward reports (:mod:`relay_shell.ssh.forwards` runs them).

:func:`parse_forward_spec` turns ``L:lport:dhost:dport``, ``R:rport:dhost:dport`` or
``D:lport`` into a :class:`ForwardSpec` before anything touches the network;
:func:`validate_bind` checks the listening address; :class:`ForwardInfo` is one row of
``ssh_forward_list``, with the principal that opened the forward.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from relay_shell.errors import InvalidInput
from relay_shell.ssh.targets import format_host_port, validate_hostname

ForwardKind = Literal["L", "R", "D"]
KIND_NAMES: dict[ForwardKind, str] = {"L": "local", "R": "remote", "D": "socks"}
MAX_SPEC_LENGTH = 600

_SPEC = re.compile(r"(?P<kind>[A-Za-z]+):(?P<rest>.*)", re.DOTALL)
_PORT_TEXT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class ForwardSpec:
    """A validated forward spec. ``dest_host``/``dest_port`` are ``None`` for ``D``."""

    kind: ForwardKind
    listen_port: int
    dest_host: str | None = None
    dest_port: int | None = None

    def text(self, listen_port: int | None = None) -> str:
        """The canonical spec text, optionally with the actual listening port."""
        port = self.listen_port if listen_port is None else listen_port
        if self.dest_host is None or self.dest_port is None:
            return f"{self.kind}:{port}"
        host = f"[{self.dest_host}]" if ":" in self.dest_host else self.dest_host
        return f"{self.kind}:{port}:{host}:{self.dest_port}"

    def endpoint(self) -> tuple[str, int]:
        """``(dhost, dport)`` of an L or R forward. Raises ValueError for D."""
        if self.dest_host is None or self.dest_port is None:
            raise ValueError("a SOCKS forward has no fixed destination")
        return self.dest_host, self.dest_port

    def destination(self) -> str | None:
        """``dhost:dport`` or ``None`` (SOCKS: chosen per connection)."""
        if self.dest_host is None or self.dest_port is None:
            return None
        return format_host_port(self.dest_host, self.dest_port)


def _port(text: str, what: str, *, allow_zero: bool) -> int:
    if not _PORT_TEXT.fullmatch(text):
        raise InvalidInput(
            "spec", f"{what} must be a number from {0 if allow_zero else 1} to 65535, not {text!r}"
        )
    value = int(text)
    if value > 65535 or (value == 0 and not allow_zero):
        raise InvalidInput("spec", f"{what} must be from {0 if allow_zero else 1} to 65535, not {value}")
    return value


def _split_destination(text: str) -> tuple[str, str]:
    """``host:port`` or ``[v6]:port`` -> (host, port text)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise InvalidInput("spec", f"expected [ipv6]:port after the listen port, not {text!r}")
        return text[1:close], text[close + 2 :]
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise InvalidInput("spec", f"expected dhost:dport after the listen port, not {text!r}")
    if ":" in host:
        raise InvalidInput("spec", f"write an IPv6 destination in brackets ([::1]:80), not {host!r}")
    return host, port


def parse_forward_spec(spec: str) -> ForwardSpec:
    """Parse ``L:lport:dhost:dport``, ``R:rport:dhost:dport`` or ``D:lport`` (kind case-insensitive).

    Pure: no I/O, no name resolution. Listen ports may be 0 (ephemeral); destination ports
    must be 1..65535; the destination host must be a host name or an IP literal.

    Raises:
        InvalidInput: (argument ``spec``) anything malformed, naming the problem.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInput("spec", "must not be empty (L:lport:dhost:dport, R:rport:dhost:dport or D:lport)")
    if len(spec) > MAX_SPEC_LENGTH:
        raise InvalidInput("spec", f"longer than {MAX_SPEC_LENGTH} characters")
    match = _SPEC.fullmatch(spec.strip())
    kind_text = match.group("kind").upper() if match else ""
    if match is None or kind_text not in ("L", "R", "D"):
        raise InvalidInput(
            "spec",
            f"{spec!r} must start with L:, R: or D: (L:lport:dhost:dport, R:rport:dhost:dport, D:lport)",
        )
    kind: ForwardKind = "L" if kind_text == "L" else "R" if kind_text == "R" else "D"
    listen_text, _, rest = match.group("rest").partition(":")
    listen_port = _port(listen_text, "the listen port", allow_zero=True)
    if kind == "D":
        if rest or match.group("rest").endswith(":"):
            raise InvalidInput("spec", f"a SOCKS forward is D:lport only, not {spec!r}")
        return ForwardSpec("D", listen_port)
    if not rest:
        raise InvalidInput(
            "spec", f"{kind} forwards need a destination: {kind}:port:dhost:dport (got {spec!r})"
        )
    host, port_text = _split_destination(rest)
    dest_port = _port(port_text, "the destination port", allow_zero=False)
    validate_hostname(host, argument="spec")
    return ForwardSpec(kind, listen_port, host, dest_port)


def validate_bind(bind: str) -> str:
    """The listen address: an IP literal (``localhost`` means ``127.0.0.1``).

    Raises:
        InvalidInput: (argument ``bind``) empty or not an IP address.
    """
    text = bind.strip() if isinstance(bind, str) else ""
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidInput(
            "bind", f"must be an IP address such as 127.0.0.1, ::1 or 0.0.0.0, not {bind!r}"
        ) from None


@dataclass(frozen=True)
class ForwardInfo:
    """One row of ``ssh_forward_list``. Byte counts are payload bytes in each direction.

    ``owner`` is the principal that opened the forward (``None`` when there is no OAuth);
    only it or an admin may close it (``governance/ownership.py``).
    """

    forward_id: str
    kind: ForwardKind
    spec: str
    bind: str
    listen_port: int
    host: str
    target: str | None
    bytes_sent: int
    bytes_received: int
    connections: int
    active_connections: int
    age_s: float
    state: Literal["open", "broken", "closed"]
    last_error: str | None
    owner: str | None = None
