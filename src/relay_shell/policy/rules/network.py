"""The network: interfaces, addresses and routes (``ip``, ``nmcli``, ``ifconfig``...) and the firewall.

Families: ``firewall`` (flushes and lock-outs tier 3, rule changes tier 2) and the network part
of ``services`` (configuration changes tier 2). Listing forms stay tier 1 (``ip`` reads are
known-safe, see :mod:`relay_shell.policy.rules.readonly`).
"""

from __future__ import annotations

import re

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import long_prefix
from relay_shell.policy.rules.base import ANY_OPTIONS, Invocation, any_of, rule, subcommand

_3 = IRREVERSIBLE


_IP_OBJECTS = {
    "link",
    "l",
    "address",
    "addr",
    "a",
    "route",
    "r",
    "ro",
    "rule",
    "ru",
    "neigh",
    "neighbor",
    "neighbour",
    "n",
    "tunnel",
    "tun",
    "netns",
    "xfrm",
    "tuntap",
    "vrf",
    "maddress",
    "maddr",
    "mroute",
    "ntable",
    "nexthop",
    "macsec",
    "mptcp",
    "sr",
    "netconf",
    "token",
    "l2tp",
    "fou",
    "ila",
    "tcp_metrics",
    "tcpmetrics",
    "stats",
    "monitor",
    "help",
}
IP_READ_VERBS = {"show", "list", "ls", "lst", "sh", "get", "help", "monitor", "s"}


@rule("ip")
def ip(invocation: Invocation) -> Verdict:
    words = list(invocation.args)
    if invocation.dynamic():
        return Verdict(STATEFUL, "services.ip")
    texts = [word.text for word in words]
    index = 0
    while index < len(texts) and texts[index].startswith("-"):
        option = texts[index].lstrip("-")
        if option in ("b", "batch", "force"):
            return Verdict(STATEFUL, "services.ip")
        index += 2 if option in ("n", "netns", "f", "family", "rc", "rcvbuf", "l", "loops") else 1
    rest = texts[index:]
    if len(rest) >= 2 and rest[0] in ("netns", "vrf") and rest[1] == "exec":
        nested = invocation.nested.argv(words[index + 3 :], f"ip {rest[0]} exec") if len(rest) > 3 else None
        verdict = Verdict(STATEFUL, "privilege.namespace")
        return verdict.worst(nested) if nested else verdict
    if len(rest) <= 1 or rest[1] in IP_READ_VERBS:
        return Verdict(REVERSIBLE, "services.ip_read")
    if rest[0] == "route" and rest[1] == "get":
        return Verdict(REVERSIBLE, "services.ip_read")
    return Verdict(STATEFUL, "services.ip")


_NETWORK_CHANGES = {
    "up",
    "down",
    "add",
    "del",
    "delete",
    "set",
    "flush",
    "change",
    "replace",
    "apply",
    "try",
    "generate",
    "revert",
    "renew",
    "release",
    "dns",
    "domain",
    "default-route",
    "llmnr",
    "mdns",
    "reconfigure",
    "reload",
    "forcerenew",
    "-s",
    "-d",
    "-K",
    "-G",
    "-A",
    "-C",
    "-E",
    "-f",
    "-p",
    "-r",
    "-x",
    "-L",
    "--change",
    "--set-priv-flags",
    "--flash",
}


@rule(
    "ifup",
    "ifdown",
    "ifconfig",
    "route",
    "iwconfig",
    "iw",
    "brctl",
    "vconfig",
    "tc",
    "ethtool",
    "arp",
    "dhclient",
    "wpa_cli",
    "netplan",
    "resolvectl",
    "networkctl",
    "ifenslave",
)
def network(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    always = invocation.name in ("ifup", "ifdown", "dhclient", "vconfig", "ifenslave")
    operands = [text for text in texts if not text.startswith("-")]
    if always or invocation.dynamic() or any_of(texts, _NETWORK_CHANGES):
        return Verdict(STATEFUL, "services.network")
    if invocation.name in ("ifconfig", "iwconfig") and len(operands) > 1:
        return Verdict(STATEFUL, "services.network")
    return Verdict(REVERSIBLE, "services.network_read")


@rule("nmcli")
def nmcli(invocation: Invocation) -> Verdict:
    changes = {
        "down",
        "up",
        "delete",
        "del",
        "modify",
        "mod",
        "add",
        "off",
        "on",
        "disconnect",
        "connect",
        "reload",
        "edit",
        "import",
        "set",
        "reapply",
        "hotspot",
        "load",
        "clone",
    }
    if invocation.dynamic() or any_of(invocation.literal_texts(), changes):
        return Verdict(STATEFUL, "services.nmcli")
    return Verdict(REVERSIBLE, "services.nmcli_read")


# -- firewall ----------------------------------------------------------------------------------


@rule(
    "iptables",
    "ip6tables",
    "ebtables",
    "arptables",
    "iptables-legacy",
    "ip6tables-legacy",
    "iptables-nft",
    "ip6tables-nft",
    worst=Verdict(_3, "firewall.iptables_flush"),
)
def iptables(invocation: Invocation) -> Verdict:
    if invocation.dynamic():
        return Verdict(_3, "firewall.iptables_flush")
    texts = invocation.literal_texts()
    for index, text in enumerate(texts):
        short = text[1:] if text.startswith("-") and not text.startswith("--") else ""
        if "F" in short or text.startswith("--flush") or (text == "--fl"):
            return Verdict(_3, "firewall.iptables_flush")
        if (
            text in ("-P", "--policy")
            and len(texts) > index + 2
            and texts[index + 2].upper() in ("DROP", "REJECT")
        ):
            return Verdict(_3, "firewall.iptables_lockout")
    changes = set("AIDRNXZEP")
    if any(
        text.startswith("-") and not text.startswith("--") and set(text[1:]) & changes for text in texts
    ) or any(
        text.startswith(
            ("--append", "--insert", "--delete", "--replace", "--new", "--zero", "--rename", "--policy")
        )
        for text in texts
    ):
        return Verdict(STATEFUL, "services.iptables")
    return Verdict(REVERSIBLE, "services.iptables_read")


@rule("iptables-restore", "ip6tables-restore", "nft")
def nft(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    # nft joins its arguments into one command line (``nft 'flush ruleset'``), ``;`` separates commands
    tokens = " ".join(texts).replace(";", " ; ").lower().split()
    joined = " ".join(tokens)
    if (
        invocation.dynamic()
        or "flush" in tokens
        or "destroy" in tokens
        or re.search(r"\bdelete (table|chain)\b", joined)
    ):
        return Verdict(_3, "firewall.nft_flush")
    if invocation.name != "nft":
        if "--noflush" not in texts and "-n" not in texts:
            return Verdict(_3, "firewall.iptables_flush")
        return Verdict(STATEFUL, "services.iptables")
    from_file = _nft_input(texts)
    if from_file is not None:
        return from_file
    if any_of(tokens, {"add", "insert", "delete", "replace", "create", "reset", "rename"}):
        return Verdict(STATEFUL, "services.nft")
    return Verdict(REVERSIBLE, "services.nft_read")


def _nft_input(texts: list[str]) -> Verdict | None:
    """``nft -f FILE`` (a ruleset file usually starts with ``flush ruleset``), ``nft -i``."""
    if any(text in ("-c", "--check") or long_prefix(text, ("check",)) for text in texts):
        return None
    if any(
        (text.startswith("-") and not text.startswith("--") and "f" in text[1:])
        or long_prefix(text, ("file",))
        for text in texts
    ):
        return Verdict(_3, "firewall.nft_file")
    if any(text in ("-i", "--interactive") or long_prefix(text, ("interactive",)) for text in texts):
        return opaque("opaque.program_option", "nft -i reads firewall commands from the terminal")
    return None


@rule("ufw")
def ufw(invocation: Invocation) -> Verdict:
    verb, _ = subcommand(invocation, ANY_OPTIONS)
    if verb in ("reset", "?"):
        return Verdict(_3, "firewall.ufw_reset")
    if verb in (None, "status", "show", "version", "app", "help", "--version", "--help"):
        return Verdict(REVERSIBLE, "services.ufw_read")
    return Verdict(STATEFUL, "services.ufw")


@rule("firewall-cmd", "firewall-offline-cmd")
def firewalld(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(text.startswith("--panic-on") for text in texts):
        return Verdict(_3, "firewall.firewalld_panic")
    reads = (
        "--list",
        "--get",
        "--query",
        "--state",
        "--info",
        "--help",
        "--version",
        "-h",
        "-V",
        "--zone",
        "--permanent",
    )
    if all(text.startswith(reads) for text in texts if text.startswith("--")) and texts:
        return Verdict(REVERSIBLE, "services.firewalld_read")
    return Verdict(STATEFUL, "services.firewalld")
