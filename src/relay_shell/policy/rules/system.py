"""The live system: disks, power, services and processes, network and firewall, accounts.

Families: ``disk`` and ``power`` (tier 3), ``firewall`` (flushes and lock-outs tier 3,
rule changes tier 2), ``accounts`` (deletion tier 3, changes tier 2), ``services``
(tier 2: ``systemctl`` changes, ``kill`` with any signal spelling, ``pkill``, ``fuser -k``,
``mount``, ``sysctl -w``, module loading, network configuration...). Listing forms stay
tier 1 (and some are known-safe reads, see :mod:`relay_shell.policy.rules.readonly`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import OptionSpec, Parsed, canonical_signal, long_prefix, spec
from relay_shell.policy.rules.base import Invocation, rule

_3 = IRREVERSIBLE


def _verb(invocation: Invocation, option_spec: OptionSpec) -> tuple[str | None, Parsed]:
    """The first operand (the subcommand) and the parse; ``"?"`` when it is an expansion."""
    parsed = invocation.options(option_spec)
    if not parsed.operands:
        return None, parsed
    first = parsed.operands[0]
    return (first.text if first.literal else "?"), parsed


def _any(words: Iterable[str], names: set[str]) -> bool:
    return any(word in names for word in words)


_ANY = spec("", "")

# -- disk (tier 3) -----------------------------------------------------------------------------


@rule(
    "mkfs",
    "mke2fs",
    "mkswap",
    "mkdosfs",
    "mkntfs",
    "mkexfatfs",
    "mkfs.ext2",
    "mkfs.ext3",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mkfs.vfat",
    "mkfs.fat",
    "mkfs.ntfs",
    "mkfs.exfat",
    "mkfs.f2fs",
    "mkfs.minix",
)
def mkfs(invocation: Invocation) -> Verdict:
    return Verdict(_3, "disk.mkfs")


@rule("wipefs", "blkdiscard", "sg_format")
def wipefs(invocation: Invocation) -> Verdict:
    return Verdict(_3, "disk.wipefs")


@rule("fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "partx")
def partition(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if not invocation.dynamic() and _any(texts, {"-l", "--list", "-d", "--dump", "-p", "--print", "-s"}):
        return Verdict(REVERSIBLE, "disk.partition_list")
    return Verdict(_3, "disk.partition")


@rule("lvremove", "vgremove", "pvremove", "lvreduce")
def lvm_remove(invocation: Invocation) -> Verdict:
    return Verdict(_3, "disk.lvm_remove")


@rule(
    "lvcreate",
    "lvextend",
    "lvresize",
    "vgcreate",
    "vgextend",
    "vgreduce",
    "pvcreate",
    "pvmove",
    "lvchange",
    "vgchange",
    "losetup",
    "blockdev",
    "resize2fs",
    "xfs_growfs",
    "tune2fs",
    "e2fsck",
    "fsck",
    "xfs_repair",
)
def disk_change(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "disk.change")


@rule("zfs", "zpool")
def zfs(invocation: Invocation) -> Verdict:
    verb, _ = _verb(invocation, _ANY)
    if verb in ("destroy", "labelclear", "?"):
        return Verdict(_3, "disk.zfs_destroy")
    if verb in (None, "list", "get", "status", "iostat", "history", "events", "version", "help"):
        return Verdict(REVERSIBLE, "disk.zfs_read")
    return Verdict(STATEFUL, "disk.zfs_change")


@rule("cryptsetup")
def cryptsetup(invocation: Invocation) -> Verdict:
    texts = set(invocation.literal_texts())
    if invocation.dynamic() or texts & {"luksFormat", "luksErase", "erase", "luksKillSlot", "reencrypt"}:
        return Verdict(_3, "disk.cryptsetup_erase")
    return Verdict(STATEFUL, "disk.cryptsetup")


@rule("mdadm")
def mdadm(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(text.startswith("--zero") for text in texts):
        return Verdict(_3, "disk.mdadm_zero")
    return Verdict(STATEFUL, "disk.mdadm")


@rule("hdparm", "nvme")
def drive_commands(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if (
        invocation.dynamic()
        or any(t.startswith(("--security-erase", "--trim", "--write")) for t in texts)
        or _any(texts, {"format", "sanitize", "--sanitize"})
    ):
        return Verdict(_3, "disk.drive_erase")
    return Verdict(REVERSIBLE, "disk.drive_info")


# -- power (tier 3) ----------------------------------------------------------------------------


@rule("shutdown", "reboot", "poweroff", "halt", "kexec", "rtcwake")
def power(invocation: Invocation) -> Verdict:
    return Verdict(_3, "power.command")


@rule("init", "telinit")
def init(invocation: Invocation) -> Verdict:
    verb, _ = _verb(invocation, _ANY)
    if verb in ("0", "6", "1", "s", "S", "single", "?"):
        return Verdict(_3, "power.init")
    return Verdict(STATEFUL, "services.init")


_SYSTEMCTL = spec(
    "aflqrt",
    "HMnopPst",
    long="all full quiet no-pager no-legend no-block no-wall force now user system global runtime "
    "failed recursive reverse after before plain value show-types dry-run no-reload no-ask-password "
    "firmware-setup",
    long_values="host machine type state property signal kill-whom kill-value job-mode output lines "
    "root image preset-mode boot-loader-menu boot-loader-entry what timestamp check-inhibitors "
    "message reboot-argument",
)
_POWER_VERBS = {
    "poweroff",
    "reboot",
    "halt",
    "kexec",
    "soft-reboot",
    "suspend",
    "hibernate",
    "hybrid-sleep",
    "suspend-then-hibernate",
    "rescue",
    "emergency",
    "default",
    "exit",
    "switch-root",
    "sleep",
}
_POWER_TARGETS = {
    "poweroff",
    "reboot",
    "halt",
    "kexec",
    "rescue",
    "emergency",
    "soft-reboot",
    "shutdown",
    "sleep",
    "suspend",
    "hibernate",
}
SYSTEMCTL_READS = {
    "status",
    "show",
    "is-active",
    "is-enabled",
    "is-failed",
    "is-system-running",
    "list-units",
    "list-unit-files",
    "list-timers",
    "list-sockets",
    "list-dependencies",
    "list-jobs",
    "list-machines",
    "list-automounts",
    "list-paths",
    "cat",
    "help",
    "show-environment",
    "get-default",
    "--version",
    "-h",
    "--help",
}


@rule("systemctl", worst=Verdict(_3, "power.systemctl"))
def systemctl(invocation: Invocation) -> Verdict:
    verb, parsed = _verb(invocation, _SYSTEMCTL)
    if verb == "?" or parsed.dynamic:
        return Verdict(_3, "power.systemctl")
    if verb in _POWER_VERBS:
        return Verdict(_3, "power.systemctl")
    if verb in ("isolate", "start", "restart", "reload-or-restart", "try-restart", "enable", "set-default"):
        units = [word.text.removesuffix(".target") for word in parsed.operands[1:]]
        if any(unit in _POWER_TARGETS for unit in units):
            return Verdict(_3, "power.systemctl")
    if verb is None or verb in SYSTEMCTL_READS:
        return Verdict(REVERSIBLE, "services.systemctl_read")
    return Verdict(STATEFUL, "services.systemctl")


@rule("loginctl")
def loginctl(invocation: Invocation) -> Verdict:
    verb, _ = _verb(invocation, _ANY)
    if verb in _POWER_VERBS or verb == "?":
        return Verdict(_3, "power.systemctl")
    if verb is None or verb.startswith(("list", "show", "session-status", "user-status", "seat-status")):
        return Verdict(REVERSIBLE, "services.loginctl_read")
    return Verdict(STATEFUL, "services.loginctl")


_SERVICE_READS = {"status", "--status-all"}


@rule("service", "rc-service", "invoke-rc.d")
def service(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if not invocation.dynamic() and (not texts or texts[-1] in _SERVICE_READS or texts == ["--status-all"]):
        return Verdict(REVERSIBLE, "services.service_read")
    return Verdict(STATEFUL, "services.service")


@rule("update-rc.d", "chkconfig", "rc-update", "sysv-rc-conf", "systemd-sysv-install")
def boot_links(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if not invocation.dynamic() and (not texts or _any(texts, {"--list", "-l", "show"})):
        return Verdict(REVERSIBLE, "services.boot_links_read")
    return Verdict(STATEFUL, "services.boot_links")


_KILL = spec("lL", "sn", long="list table", long_values="signal")


def kill_signals(invocation: Invocation) -> tuple[list[str], bool]:
    """The canonical signals a ``kill`` sends, and whether it only lists signals."""
    signals: list[str] = []
    listing = False
    for word in invocation.args:
        text = word.text
        if not word.literal:
            continue
        if text in ("-l", "-L", "--list", "--table"):
            listing = True
        elif text.startswith("-") and len(text) > 1 and text not in ("-s", "-n", "--signal", "--"):
            spelled = text[1:]
            if spelled.startswith(("s", "n")) and len(spelled) > 1 and canonical_signal(spelled[1:]):
                spelled = spelled[1:]
            signals.append(canonical_signal(spelled) or spelled.upper())
    parsed = invocation.options(_KILL)
    signals.extend(
        canonical_signal(value) or value.upper() for value in parsed.values("-s", "-n", "--signal")
    )
    return signals, listing


@rule("kill", worst=Verdict(STATEFUL, "services.kill"))
def kill(invocation: Invocation) -> Verdict:
    signals, listing = kill_signals(invocation)
    operands = [word for word in invocation.args if not word.text.startswith("-")]
    if not invocation.dynamic() and ((listing and not operands) or signals == ["0"]):
        return Verdict(REVERSIBLE, "services.kill_check")
    return Verdict(STATEFUL, "services.kill")


@rule("pkill", "killall", "killall5", "skill", "slay", "snice", "pkill.sh", "xkill")
def kill_by_name(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "services.kill_by_name")


@rule("fuser")
def fuser(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        t == "--kill" or (t.startswith("-") and not t.startswith("--") and "k" in t) for t in texts
    ):
        return Verdict(STATEFUL, "services.fuser_kill")
    return Verdict(REVERSIBLE, "services.fuser")


@rule("crontab")
def crontab(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if not invocation.dynamic() and "-l" in texts and not _any(texts, {"-e", "-r", "-i"}):
        return Verdict(REVERSIBLE, "services.crontab_list")
    if "-e" in texts:
        invocation.interactive = True
    return Verdict(STATEFUL, "services.crontab")


@rule("mount")
def mount(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    listing = {"-l", "--show-labels", "-v", "--verbose"}
    rest = [t for t in texts if t not in listing]
    if not invocation.dynamic() and (not rest or (rest[0] in ("-t", "--types") and len(rest) == 2)):
        return Verdict(REVERSIBLE, "services.mount_list")
    return Verdict(STATEFUL, "services.mount")


@rule("umount", "swapoff", "eject", "fusermount", "fusermount3")
def unmount(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "services.unmount")


@rule("swapon")
def swapon(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if (
        not invocation.dynamic()
        and texts
        and all(
            t.startswith(("--show", "--noheadings", "--raw", "--bytes")) or t in ("-s", "--summary")
            for t in texts
        )
    ):
        return Verdict(REVERSIBLE, "services.swap_list")
    return Verdict(STATEFUL, "services.unmount")


@rule("sysctl")
def sysctl(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    writes = {"-w", "--write", "-p", "--load", "--system", "-f"}
    if invocation.dynamic() or _any(texts, writes) or any("=" in t and not t.startswith("-") for t in texts):
        return Verdict(STATEFUL, "services.sysctl")
    return Verdict(REVERSIBLE, "services.sysctl_read")


@rule("modprobe", "rmmod", "insmod", "depmod", "kmod")
def modules(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "services.modules")


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
    if always or invocation.dynamic() or _any(texts, _NETWORK_CHANGES):
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
    if invocation.dynamic() or _any(invocation.literal_texts(), changes):
        return Verdict(STATEFUL, "services.nmcli")
    return Verdict(REVERSIBLE, "services.nmcli_read")


@rule("hostnamectl", "timedatectl", "localectl")
def host_settings(invocation: Invocation) -> Verdict:
    verb, _ = _verb(invocation, _ANY)
    if verb is None or verb in (
        "status",
        "show",
        "list-timezones",
        "list-locales",
        "list-keymaps",
        "timesync-status",
        "show-timesync",
        "--help",
        "--version",
    ):
        return Verdict(REVERSIBLE, "services.host_settings_read")
    return Verdict(STATEFUL, "services.host_settings")


@rule("hostname")
def hostname(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if (
        invocation.dynamic()
        or _any(texts, {"-F", "--file", "-b", "--boot"})
        or any(not t.startswith("-") for t in texts)
    ):
        return Verdict(STATEFUL, "services.host_settings")
    return Verdict(REVERSIBLE, "services.hostname_read")


@rule("date")
def date(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "uRIj",
            "dfrs",
            long="utc universal rfc-email debug",
            long_values="date file reference set",
            long_optional="iso-8601 rfc-3339",
        )
    )
    if (
        parsed.dynamic
        or parsed.has("-s", "--set")
        or any(not w.text.startswith("+") for w in parsed.operands)
    ):
        return Verdict(STATEFUL, "services.clock")
    return Verdict(REVERSIBLE, "services.date_read")


@rule("hwclock", "timedatectl-set", "ntpdate", "chronyc")
def clock(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if not texts or _any(texts, {"-r", "--show", "--get", "tracking", "sources", "sourcestats", "-q"}):
        return Verdict(REVERSIBLE, "services.clock_read")
    return Verdict(STATEFUL, "services.clock")


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
    if _any(tokens, {"add", "insert", "delete", "replace", "create", "reset", "rename"}):
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
    verb, _ = _verb(invocation, _ANY)
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


# -- accounts ----------------------------------------------------------------------------------


@rule("userdel", "deluser", "groupdel", "delgroup", "rmuser")
def delete_account(invocation: Invocation) -> Verdict:
    return Verdict(_3, "accounts.delete")


@rule(
    "useradd",
    "adduser",
    "usermod",
    "groupadd",
    "addgroup",
    "groupmod",
    "gpasswd",
    "passwd",
    "chpasswd",
    "chage",
    "visudo",
    "vipw",
    "vigr",
    "newusers",
    "chsh",
    "chfn",
    "pwconv",
    "grpconv",
    "pwunconv",
)
def change_account(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if (
        invocation.name in ("passwd", "chage")
        and not invocation.dynamic()
        and _any(texts, {"-S", "--status", "-l", "--list"})
    ):
        return Verdict(REVERSIBLE, "accounts.status")
    if invocation.name == "visudo" and texts and set(texts) <= {"-c", "--check", "-q", "-s"}:
        return Verdict(REVERSIBLE, "accounts.status")
    return Verdict(STATEFUL, "privilege.accounts")
