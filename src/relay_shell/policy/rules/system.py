"""The live system: disks, power, services and processes, mounts, the kernel, host settings, accounts.

Families: ``disk`` and ``power`` (tier 3), ``accounts`` (deletion tier 3, changes tier 2),
``services`` (tier 2: ``systemctl`` changes, ``kill`` with any signal spelling, ``pkill``,
``fuser -k``, ``mount``, ``sysctl -w``, module loading...). Listing forms stay tier 1 (and
some are known-safe reads, see :mod:`relay_shell.policy.rules.readonly`). Network
configuration and the firewall are in :mod:`relay_shell.policy.rules.network`.
"""

from __future__ import annotations

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict
from relay_shell.policy.options import canonical_signal, spec
from relay_shell.policy.rules.base import ANY_OPTIONS, Invocation, any_of, rule, subcommand

_3 = IRREVERSIBLE


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
    if not invocation.dynamic() and any_of(texts, {"-l", "--list", "-d", "--dump", "-p", "--print", "-s"}):
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
    verb, _ = subcommand(invocation, ANY_OPTIONS)
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
        or any_of(texts, {"format", "sanitize", "--sanitize"})
    ):
        return Verdict(_3, "disk.drive_erase")
    return Verdict(REVERSIBLE, "disk.drive_info")


# -- power (tier 3) ----------------------------------------------------------------------------


@rule("shutdown", "reboot", "poweroff", "halt", "kexec", "rtcwake")
def power(invocation: Invocation) -> Verdict:
    return Verdict(_3, "power.command")


@rule("init", "telinit")
def init(invocation: Invocation) -> Verdict:
    verb, _ = subcommand(invocation, ANY_OPTIONS)
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
    verb, parsed = subcommand(invocation, _SYSTEMCTL)
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
    verb, _ = subcommand(invocation, ANY_OPTIONS)
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
    if not invocation.dynamic() and (not texts or any_of(texts, {"--list", "-l", "show"})):
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
    if not invocation.dynamic() and "-l" in texts and not any_of(texts, {"-e", "-r", "-i"}):
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
    if (
        invocation.dynamic()
        or any_of(texts, writes)
        or any("=" in t and not t.startswith("-") for t in texts)
    ):
        return Verdict(STATEFUL, "services.sysctl")
    return Verdict(REVERSIBLE, "services.sysctl_read")


@rule("modprobe", "rmmod", "insmod", "depmod", "kmod")
def modules(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "services.modules")


@rule("hostnamectl", "timedatectl", "localectl")
def host_settings(invocation: Invocation) -> Verdict:
    verb, _ = subcommand(invocation, ANY_OPTIONS)
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
        or any_of(texts, {"-F", "--file", "-b", "--boot"})
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
    if not texts or any_of(texts, {"-r", "--show", "--get", "tracking", "sources", "sourcestats", "-q"}):
        return Verdict(REVERSIBLE, "services.clock_read")
    return Verdict(STATEFUL, "services.clock")


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
        and any_of(texts, {"-S", "--status", "-l", "--list"})
    ):
        return Verdict(REVERSIBLE, "accounts.status")
    if invocation.name == "visudo" and texts and set(texts) <= {"-c", "--check", "-q", "-s"}:
        return Verdict(REVERSIBLE, "accounts.status")
    return Verdict(STATEFUL, "privilege.accounts")
