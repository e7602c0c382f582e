"""Admission (docs/architecture.md): the deny list, the policy mode and the allow list.

Order, for every call: the deny regex is searched in the probe first, in every mode and
for every tier; then ``readonly`` admits tier 0 only, ``guarded`` refuses tier 2 and 3
unless the allow regex matches the probe, and ``open`` admits everything (the call is
still classified and audited).

The probe is ``"<tool> <text>"`` followed by one line per target (host, remote path,
forward destination) carrying the target as given and the canonical spellings of any IP
literal in it, so ``0x7f000001``, ``2130706433``, ``127.1`` or ``::ffff:127.0.0.1`` cannot
dodge a deny on ``127\\.0\\.0\\.1``. Host names are not resolved.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from relay_shell.config import PolicyMode, Settings
from relay_shell.errors import ConfigError, Decision
from relay_shell.vocabulary import Tier

_MAX_TIER = 3
_STOP = "do not retry with a rephrased command"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TARGET_SEPARATORS = re.compile(r"[\s,]+")
_IPV4_PART = re.compile(r"0[xX][0-9A-Fa-f]{1,32}|0[0-7]{0,32}|[1-9][0-9]{0,32}")  # bounded for int()


@dataclass(frozen=True)
class PolicyConfig:
    """The admission settings, with the regexes compiled once."""

    mode: PolicyMode
    deny: re.Pattern[str] | None
    allow: re.Pattern[str] | None

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        """Compile ``POLICY_DENY`` / ``POLICY_ALLOW``.

        Raises:
            ConfigError: a regex does not compile (the settings model normally catches it first).
        """
        return cls(
            mode=settings.policy_mode,
            deny=_compile(settings.policy_deny, "RELAY_SHELL_POLICY_DENY"),
            allow=_compile(settings.policy_allow, "RELAY_SHELL_POLICY_ALLOW"),
        )


def _compile(source: str | None, variable: str) -> re.Pattern[str] | None:
    if source is None:
        return None
    try:
        return re.compile(source)
    except re.error as exc:
        raise ConfigError(f"{variable}: not a valid regular expression: {exc}") from exc


# --- targets and the probe ----------------------------------------------------------------------


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


def _ip_forms(host: str) -> list[str]:
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
    or several of those separated by commas or spaces (a jump chain). IPv4 literals are
    read the way ``inet_aton`` reads them (``0x7f000001``, ``2130706433``, ``127.1``,
    ``0177.0.0.1`` are all ``127.0.0.1``); IPv6 literals come back compressed, plus the
    embedded IPv4 address of ``::ffff:a.b.c.d``. Names that are not IP literals give [].
    """
    forms: list[str] = []
    for part in _TARGET_SEPARATORS.split(target):
        if part:
            forms.extend(form for form in _ip_forms(_host_of(part)) if form not in forms)
    return forms


def build_probe(tool: str, text: str, targets: Sequence[str]) -> str:
    """``"<tool> <text>"``, then one line per target: the target and its canonical IP forms."""
    lines = [f"{tool} {text}"]
    for target in targets:
        lines.append(" ".join([target, *(form for form in canonical_ip_forms(target) if form != target)]))
    return "\n".join(lines)


# --- the decision ---------------------------------------------------------------------------------


def decide(
    config: PolicyConfig, tool: str, tier: int, probe: str, *, classified_by: str | None = None
) -> Decision:
    """Admit or refuse one call (see the module docstring for the order).

    ``classified_by`` (the classifier rule, when one set the tier) only enriches the reason.
    A refusal's ``rule`` is ``"deny"``, ``"mode:readonly"`` or ``"mode:guarded"``; an
    admission's is ``"allow"`` when the allow list was needed, else None. ``tool`` is
    part of the probe already and is named in the reason.

    Raises:
        ValueError: ``tier`` is not 0..3.
    """
    if not 0 <= tier <= _MAX_TIER:
        raise ValueError(f"tier must be 0..3, got {tier}")
    mode = config.mode
    what = f"tier {tier} {Tier(tier).name}" + (f" rule {classified_by}" if classified_by else "")
    if config.deny is not None and config.deny.search(probe):
        return _refuse(
            tier,
            "deny",
            mode,
            f"refused by policy (mode {mode.value}, {tool}, {what}: the deny list RELAY_SHELL_POLICY_DENY "
            "matches this call or its target): ask the operator to run it or to change "
            f"RELAY_SHELL_POLICY_DENY; {_STOP}",
        )
    if mode is PolicyMode.READONLY and tier > 0:
        return _refuse(
            tier,
            "mode:readonly",
            mode,
            f"refused by policy (mode readonly admits only read-only tools; {tool} is {what}): ask the "
            f"operator to run it or to change RELAY_SHELL_POLICY_MODE; {_STOP}",
        )
    if mode is PolicyMode.GUARDED and tier >= 2:
        if config.allow is None or not config.allow.search(probe):
            return _refuse(
                tier,
                "mode:guarded",
                mode,
                f"refused by policy (mode guarded, {tool}, {what}): ask the operator to run it or to "
                f"change RELAY_SHELL_POLICY_ALLOW; {_STOP}",
            )
        return Decision(
            True, tier, f"admitted by RELAY_SHELL_POLICY_ALLOW (mode guarded, {what})", "allow", mode.value
        )
    return Decision(True, tier, f"admitted (mode {mode.value}, {what})", None, mode.value)


def _refuse(tier: int, rule: str, mode: PolicyMode, reason: str) -> Decision:
    return Decision(allowed=False, tier=tier, reason=reason, rule=rule, mode=mode.value)
