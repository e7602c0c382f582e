"""Daemons reached through a socket or a bus: sockets (``ss -K``), the journal and the kernel
log (vacuum, rotate, clear), D-Bus method calls (``busctl call``, ``dbus-send``, ``gdbus``):
tier 2, power methods and power targets tier 3."""

from __future__ import annotations

import re

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict
from relay_shell.policy.options import long_prefix
from relay_shell.policy.rules.base import Invocation, rule


@rule("ss")
def ss(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        long_prefix(text, ("kill",)) or (text.startswith("-") and not text.startswith("--") and "K" in text)
        for text in texts
    ):
        return Verdict(STATEFUL, "services.kill_sockets")
    return Verdict(REVERSIBLE, "network.query")


@rule("journalctl")
def journalctl(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        long_prefix(
            text,
            (
                "vacuum-size",
                "vacuum-files",
                "vacuum-time",
                "rotate",
                "flush",
                "relinquish-var",
                "smart-relinquish-var",
                "setup-keys",
                "update-catalog",
            ),
        )
        for text in texts
    ):
        return Verdict(STATEFUL, "services.journal")
    return Verdict(REVERSIBLE, "services.journal_query")


@rule("dmesg")
def dmesg(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        long_prefix(text, ("clear", "read-clear", "console-off", "console-on", "console-level"))
        or (text.startswith("-") and not text.startswith("--") and set(text[1:]) & set("cCDEn"))
        for text in texts
    ):
        return Verdict(STATEFUL, "services.kernel_log")
    return Verdict(REVERSIBLE, "services.kernel_log_query")


_DBUS_POWER = re.compile(
    r"(?i)\b(?:power_?off|reboot|halt|kexec|suspend|hibernate|hybridsleep|suspendthenhibernate|"
    r"softreboot|Exit|Rescue|Emergency)\b"
)
_POWER_TARGET = re.compile(
    r"(?i)\b(?:poweroff|reboot|halt|kexec|rescue|emergency|suspend|hibernate)\.target\b"
)
_DBUS_READS = frozenset(
    {"list", "status", "tree", "introspect", "get-property", "monitor", "capture", "help", "--version", "-h"}
)


@rule("busctl", "dbus-send", "gdbus", "qdbus", "qdbus6", "dbus-daemon", "varlinkctl")
def dbus(invocation: Invocation) -> Verdict:
    """A D-Bus method call can do anything its service offers (systemd, logind, NetworkManager,
    polkit...): tier 2; power methods (``PowerOff``, ``Reboot``...) tier 3."""
    texts = invocation.literal_texts()
    if invocation.dynamic():
        return Verdict(IRREVERSIBLE, "power.dbus")
    if any(_DBUS_POWER.search(text.rsplit(".", 1)[-1]) or _POWER_TARGET.search(text) for text in texts):
        return Verdict(IRREVERSIBLE, "power.dbus")
    operands = [text for text in texts if not text.startswith("-")]
    if invocation.name == "busctl" and (not operands or operands[0] in _DBUS_READS):
        return Verdict(REVERSIBLE, "services.dbus_query")
    if invocation.name == "gdbus" and operands[:1] in (["introspect"], ["monitor"], ["wait"]):
        return Verdict(REVERSIBLE, "services.dbus_query")
    if invocation.name in ("qdbus", "qdbus6") and len(operands) < 3:
        return Verdict(REVERSIBLE, "services.dbus_query")
    return Verdict(STATEFUL, "services.dbus_call")
