"""The rules of the regex table (:mod:`relay_shell.policy.regex_floor` applies them).

**Word rules** match a command with its telling arguments wherever a shell word starts
(``rm -rf``, ``DROP TABLE``, even inside quotes: ambiguity rounds up). **Command rules** match
a bare name (``reboot``, ``sudo``) only at a command position: after start, ``; & | ( ) { ` !``,
a newline or ``find -exec``, behind ``VAR=x``, a path, a backslash and up to four wrappers
(``sudo -u x``, ``env``, ``nohup``, ``timeout 5``, ``ssh host``, ``sh -c '``...), so
``last reboot`` stays tier 1. Every pattern is linear: gaps are bounded and possessive, no
pattern starts with ``\\b``. A change to the table bumps ``regex_floor.PATTERNS_VERSION``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

READ_ONLY, REVERSIBLE, STATEFUL, IRREVERSIBLE = 0, 1, 2, 3


@dataclass(frozen=True)
class Rule:
    """One table entry. ``name`` is ``family.rule`` (e.g. ``deletion.rm_recursive``).

    ``anchors`` are lowercase strings at least one of which occurs in any text the pattern
    matches (lowercased); the classifier skips the pattern when none does. ``source`` is
    compiled on first use of :attr:`pattern`, so importing the table (server start-up) does
    not pay for compiling it.
    """

    name: str
    family: str
    tier: int
    source: str
    anchors: tuple[str, ...] = ()

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The compiled :attr:`source`."""
        return re.compile(self.source)


@dataclass(frozen=True)
class _Head:
    """Where a rule's match starts: a regex that begins with a literal or a character set."""

    pattern: str
    anchors: tuple[str, ...]


# --- building blocks ------------------------------------------------------------------------

_NOT_WORD = r"\s;&|()`"  # characters that end a shell word (redirections stay inside it)
_TOKEN = rf"[^{_NOT_WORD}]++"
_SP = r"[ \t]++"
_END = r"(?=[\s;&|<>()`'\"\\]|$)"  # the word ends here
_VALUE = rf"[^{_NOT_WORD}'\"-][^{_NOT_WORD}]*+"  # an option's separate value: not a flag
_ASSIGNMENT = rf"[A-Za-z_]\w*+=(?:\"[^\"\n]{{0,256}}+\"|'[^'\n]{{0,256}}+'|[^{_NOT_WORD}]*+)"
_PATH = r"(?:[\w.~-]{0,64}+/){0,16}+\\?+"
_LEAD = r"[;&|(){\n\r`!]"  # scanned texts start with a newline, so this covers the start
_OPTION_WRAPPERS = (
    "sudo|doas|pkexec|run0|env|nohup|nice|ionice|time|timeout|exec|command(?![ \\t]++-[vV])|xargs|watch|"
    "stdbuf|setsid|strace|ltrace|unshare|chrt|systemd-run|busybox|eatmydata|fakeroot|caffeinate|"
    "sh|bash|zsh|dash|ksh|eval|then|do|else|elif|if|while|until"
)
_POSITIONAL_WRAPPERS = "chroot|ssh|su|runuser|flock|taskset|sg"
_DEV_SAFE = (
    r"(?!(?:null|zero|full|u?random|std(?:out|err|in)|tty\w*+|console|kmsg|log)(?![\w.\-])"
    r"|(?:pts|fd|shm|tcp|udp)/)"
)
_DEVICE = rf"[\"']?+/dev/{_DEV_SAFE}[\w.\-]"  # a device node other than null, tty, stdout...
_ETC = r"[\"']?+/etc(?:/|(?=[\"'\s;&|)]|$))"


def _options(valued: str = "", limit: int = 8) -> str:
    """Up to ``limit`` options; ``valued`` names the options that take a separate value."""
    alternatives = [rf"(?:{valued}){_SP}{_VALUE}"] if valued else []
    alternatives.append(rf"-[^{_NOT_WORD}]*+")
    return rf"(?:{_SP}(?:{'|'.join(alternatives)})){{0,{limit}}}+"


def _later(danger: str, limit: int = 32) -> str:
    """A word matching ``danger`` among the next ``limit`` words of the same simple command."""
    return rf"(?:{_SP}(?!{danger}){_TOKEN}){{0,{limit}}}+{_SP}(?:{danger})"


def _word(names: str, suffix: str = "") -> _Head:
    """One of ``names`` (literals separated by ``|``) as a whole shell word anywhere."""
    heads = "|".join(rf"{re.escape(name)}(?<![\w.\-]{re.escape(name)})" for name in names.split("|"))
    return _Head(rf"(?:{heads}){suffix}{_END}", tuple(names.lower().split("|")))


def _caseless(word: str) -> _Head:
    """``word`` in any letter case, starting a word (for SQL keywords)."""
    letters = "".join(f"[{letter.upper()}{letter.lower()}]" for letter in word)
    return _Head(rf"{letters}(?<![\w.\-](?i:{word}))", (word.lower(),))


def _literal(text: str, *anchors: str) -> _Head:
    return _Head(re.escape(text), anchors or (text.lower(),))


def _command(names: str, suffix: str = "") -> _Head:
    """One of ``names`` (literals separated by ``|``) at a command position, as a whole word."""
    name_here = rf"(?:{'|'.join(map(re.escape, names.split('|')))}){suffix}{_END}"
    value = rf"(?!{name_here}){_VALUE}"
    argument = rf"(?:-[A-Za-z]{_SP}{value}|-[^{_NOT_WORD}]*+|\d[^{_NOT_WORD}]*+|{_ASSIGNMENT})"
    arguments = rf"(?:{_SP}{argument}){{0,8}}+"
    wrapper = (
        rf"(?!{_PATH}{name_here}){_PATH}(?:(?:{_OPTION_WRAPPERS}){_END}{arguments}"
        rf"|(?:{_POSITIONAL_WRAPPERS}){_END}{arguments}(?:{_SP}{value})?+{arguments})"
    )
    pattern = (
        rf"{_LEAD}[ \t]*+(?=[\w\"'\\./~])[\"']?+(?:{_ASSIGNMENT}{_SP}){{0,8}}+"
        rf"(?:{wrapper}{_SP}[\"']?+){{0,4}}+{_PATH}{name_here}"
    )
    return _Head(pattern, tuple(names.lower().split("|")))


def _verb(verbs: str, valued: str = "") -> str:
    """The tail after a command: its options, then one of ``verbs`` as the next word."""
    return rf"{_options(valued)}{_SP}(?:{verbs}){_END}"


_GIT_OPTIONS = _options("-[Cc]|--git-dir|--work-tree")


def _git(subcommand: str) -> str:
    """The tail after ``git``: global options, then ``subcommand``."""
    return rf"{_GIT_OPTIONS}{_SP}(?:{subcommand}){_END}"


def _rule(name: str, tier: int, head: _Head, tail: str = "") -> Rule:
    return Rule(name, name.partition(".")[0], tier, head.pattern + tail, head.anchors)


_RM_RECURSIVE = r"-[A-Za-z]*[rR]|--(?:r|no-p)[\w-]*"
_RM_FORCED = r"-[A-Za-z]*f|--f[\w-]*"
_NOT_A_SUBCOMMAND = "".join(
    f"(?<!{tool} rm)" for tool in ("docker", "podman", "nerdctl", "crictl", "container", "compose", "git")
)
_CONTAINER_OBJECTS = (
    "container|image|volume|network|system|context|plugin|node|service|stack|secret|config|builder|"
    "buildx|manifest|trust|compose"
)
_CONTAINER_READS = (
    "ps|images|logs|inspect|stats|top|version|info|events|history|port|diff|search|ls|list|df|"
    "config|help|show|du|--help|--version"
)
_KUBE_READS = (
    "get|describe|logs|top|explain|api-resources|api-versions|version|cluster-info|config|auth|"
    "diff|events|wait|port-forward|proxy|completion|plugin|kustomize|options|help|"
    rf"rollout{_SP}(?:status|history)"
)
_HELM_READS = (
    "list|ls|status|get|history|hist|show|inspect|search|template|lint|version|env|repo|dependency|"
    "dep|plugin|pull|fetch|verify|completion|help|registry|package|create"
)
_SERVICE_VERBS = "start|stop|restart|reload|force-reload|condrestart|try-restart|zap"
_IPTABLES = _word("iptables|ip6tables|ebtables|arptables", suffix="(?:-legacy|-nft)?+")
_TARGET = r"(?=[ \t]*+(?:\d?[<>]|[;&|)\n`]|$))"  # the word is the last of its simple command

# --- the table ------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    # deletion (tier 3)
    _rule("deletion.rm_recursive", 3, _word("rm", suffix=_NOT_A_SUBCOMMAND), _later(_RM_RECURSIVE)),
    _rule("deletion.rm_forced", 3, _word("rm", suffix=_NOT_A_SUBCOMMAND), _later(_RM_FORCED)),
    _rule("deletion.git_rm_forced", 3, _word("git"), _git("rm") + _later(_RM_FORCED)),
    _rule(
        "deletion.find_delete",
        3,
        _word("find"),
        _later(rf"-delete{_END}|-(?:exec|execdir|ok|okdir){_SP}{_PATH}rm{_END}"),
    ),
    _rule("deletion.xargs_rm", 3, _word("xargs"), rf"{_options('-[nILPdaEs]')}{_SP}{_PATH}rm{_END}"),
    _rule("deletion.rsync_delete", 3, _word("rsync"), _later(r"--del[\w-]*+")),
    # disk and filesystem destruction (tier 3)
    _rule("disk.mkfs", 3, _command("mkfs", suffix=r"(?:\.\w++)?+")),
    _rule("disk.mkfs_family", 3, _command("mke2fs|mkswap|mkdosfs|mkntfs|mkexfatfs")),
    _rule("disk.wipefs", 3, _command("wipefs|blkdiscard")),
    _rule("disk.shred", 3, _command("shred|wipe|srm")),
    _rule(
        "disk.partition",
        3,
        _command("fdisk|sfdisk|cfdisk|gdisk|sgdisk|parted"),
        rf"(?!{_SP}(?:-l|--list){_END})",
    ),
    _rule("disk.dd_to_device", 3, _word("dd"), _later(f"of={_DEVICE}")),
    _rule("disk.redirect_to_device", 3, _literal(">", "/dev/"), rf"[>|]?+[ \t]*+{_DEVICE}"),
    _rule("disk.tee_to_device", 3, _word("tee"), _later(_DEVICE)),
    _rule("disk.lvm_remove", 3, _command("lvremove|vgremove|pvremove")),
    _rule("disk.zfs_destroy", 3, _word("zfs|zpool"), rf"{_SP}(?:destroy|labelclear){_END}"),
    _rule("disk.cryptsetup_erase", 3, _word("cryptsetup"), _later(rf"(?:luksFormat|luksErase|erase){_END}")),
    _rule("disk.mdadm_zero", 3, _word("mdadm"), _later("--zero-superblock")),
    # power state (tier 3)
    _rule("power.command", 3, _command("shutdown|reboot|poweroff|halt|kexec")),
    _rule("power.init", 3, _command("init|telinit"), rf"{_SP}[016sS]{_END}"),
    _rule(
        "power.systemctl",
        3,
        _word("systemctl|loginctl"),
        rf"{_options('-[HMp]')}{_SP}(?:(?:poweroff|reboot|halt|kexec|soft-reboot|suspend|hibernate|"
        rf"hybrid-sleep|suspend-then-hibernate|rescue|emergency){_END}"
        rf"|(?:isolate|start){_SP}(?:poweroff|reboot|halt|kexec|rescue|emergency)\.target)",
    ),
    _rule("power.sysrq", 3, _literal("sysrq-trigger")),
    # destructive SQL and data stores (tier 3)
    _rule(
        "sql.drop",
        3,
        _caseless("drop"),
        r"(?i:\s{1,64}+(?:temporary\s{1,64}+)?+"
        r"(?:table|database|schema|keyspace|tablespace|user|role|owned|collection)(?!\w))",
    ),
    _rule(
        "sql.truncate",
        3,
        _caseless("truncate"),
        r"(?i:\s{1,64}+(?:table\s{1,64}+)?+(?:only\s{1,64}+)?+)[A-Za-z_\"`\[]",
    ),
    _rule(
        "sql.delete_without_where",
        3,
        _caseless("delete"),
        r"(?i:\s{1,64}+from\s{1,64}+[\w.\"`\[\]]{1,256}+\s*+(?:;|$|[\"')]))",
    ),
    _rule("sql.redis_flush", 3, _caseless("flush"), r"(?i:all|db)(?!\w)"),
    _rule("sql.mongo_drop", 3, _literal("dropDatabase", "dropdatabase"), r"(?!\w)"),
    _rule("sql.dropdb", 3, _word("dropdb")),
    _rule("sql.mysqladmin_drop", 3, _word("mysqladmin"), _later(rf"drop{_END}")),
    # history rewrites (tier 3)
    _rule(
        "history.git_push_force",
        3,
        _word("git"),
        _git("push") + _later(r"--force[\w=-]*+|-[A-Za-z]*[fd]|--mirror|--delete|\+[^\s;&|()]|:[^\s;&|()]"),
    ),
    _rule("history.git_reset_hard", 3, _word("git"), _git("reset") + _later("--hard")),
    _rule("history.git_clean", 3, _word("git"), _git("clean") + _later(r"-[A-Za-z]*f|--force")),
    _rule("history.git_rewrite", 3, _word("git"), _git(rf"filter-branch|filter-repo|reflog{_SP}expire")),
    # account deletion (tier 3)
    _rule("accounts.delete", 3, _command("userdel|deluser|groupdel|delgroup|rmuser")),
    # firewall flushes (tier 3)
    _rule(
        "firewall.iptables_flush",
        3,
        _IPTABLES,
        _later(rf"-[A-Za-z]*F|--flush|(?:-P|--policy){_SP}{_TOKEN}{_SP}(?:DROP|REJECT)"),
    ),
    _rule(
        "firewall.nft_flush", 3, _word("nft"), _later(rf"flush{_SP}(?:ruleset|table|chain)|delete{_SP}table")
    ),
    _rule("firewall.ufw_reset", 3, _word("ufw"), _verb("reset")),
    _rule("firewall.firewalld_panic", 3, _word("firewall-cmd"), _later("--panic-on")),
    # fork bombs (tier 3)
    _rule(
        "forkbomb.shell",
        3,
        _Head(r"[\s;&|(){}]", ("{",)),
        r"(?:function[ \t]++)?+(?P<bomb>[^\s;&|<>(){}]{1,64}+)[ \t]*+(?:\([ \t]*+\))?+[ \t]*+"
        r"\{[^}]{0,64}?(?P=bomb)[ \t]*+[|&][ \t]*+(?P=bomb)",
    ),
    _rule("forkbomb.perl", 3, _literal("fork"), r"[ \t]++while[ \t]++fork"),
    _rule("forkbomb.fork_loop", 3, _literal("while"), r"[^\n]{0,80}?fork[ \t]*+\("),
    # service and live system state (tier 2)
    _rule(
        "services.systemctl",
        2,
        _word("systemctl"),
        _verb(
            "start|stop|restart|reload|try-restart|reload-or-restart|try-reload-or-restart|condrestart|"
            "force-reload|enable|disable|reenable|mask|unmask|kill|isolate|set-default|set-property|edit|"
            "revert|preset|preset-all|link|daemon-reload|daemon-reexec|reset-failed|set-environment|"
            "unset-environment|freeze|thaw|clean",
            "-[HMp]",
        ),
    ),
    _rule(
        "services.service",
        2,
        _word("service|rc-service|invoke-rc.d"),
        rf"{_SP}{_TOKEN}{_SP}(?:{_SERVICE_VERBS}){_END}",
    ),
    _rule(
        "services.init_script",
        2,
        _literal("/etc/", "/etc/init.d/", "/etc/rc.d/init.d/"),
        rf"(?:rc\.d/)?+init\.d/{_TOKEN}{_SP}(?:{_SERVICE_VERBS}){_END}",
    ),
    _rule(
        "services.boot_links",
        2,
        _word("update-rc.d|chkconfig|rc-update|sysv-rc-conf"),
        rf"{_SP}(?!--list)[^\s;&|()]",
    ),
    _rule("services.kill_signal", 2, _word("kill"), _later(rf"-(?:[sn]{_SP})?+(?:9|KILL|SIGKILL){_END}")),
    _rule("services.kill_by_name", 2, _command("pkill|killall|killall5|skill|slay")),
    _rule("services.crontab", 2, _command("crontab"), rf"(?!(?:{_SP}-u{_SP}{_TOKEN})?+{_SP}-l{_END})"),
    _rule("services.mount", 2, _command("mount"), rf"{_SP}(?!-l{_END}|--show-labels)[^\s;&|()]"),
    _rule("services.unmount", 2, _command("umount|swapoff|swapon")),
    _rule("services.sysctl", 2, _word("sysctl"), _later(r"-w|--write|-p|--load|--system|[\w.]+=")),
    _rule("services.modules", 2, _command("modprobe|rmmod|insmod")),
    _rule(
        "services.ip",
        2,
        _word("ip"),
        rf"{_options('-n|-netns|-f|-family')}{_SP}"
        rf"(?:link|l|addr|address|a|route|r|rule|neigh|tunnel|netns|xfrm|tuntap|vrf){_SP}"
        rf"(?:add|del|delete|set|change|replace|flush|append){_END}",
    ),
    _rule("services.ifupdown", 2, _command("ifdown|ifup")),
    _rule("services.nmcli", 2, _word("nmcli"), _later(rf"(?:down|delete|modify|off|disconnect|up){_END}")),
    _rule(
        "services.host_settings",
        2,
        _word("hostnamectl|timedatectl|localectl"),
        rf"{_options()}{_SP}set-",
    ),
    _rule(
        "services.iptables",
        2,
        _IPTABLES,
        _later(r"-[AIDRNXZE]|--(?:append|insert|delete|replace|new-chain|delete-chain|zero|rename-chain)"),
    ),
    _rule(
        "services.ufw",
        2,
        _word("ufw"),
        _verb("allow|deny|reject|limit|delete|insert|enable|disable|route|default|prepend"),
    ),
    _rule(
        "services.firewalld",
        2,
        _word("firewall-cmd"),
        _later(r"--(?:add|remove|change|set|reload|runtime-to-permanent|new|delete)"),
    ),
    _rule(
        "services.nft",
        2,
        _word("nft"),
        rf"(?:{_verb('add|insert|delete|replace|create')}|{_later(rf'(?:-f|--file){_END}')})",
    ),
    # packages (tier 2)
    _rule(
        "packages.apt",
        2,
        _word("apt|apt-get|aptitude"),
        _verb(
            "install|reinstall|remove|purge|autoremove|autopurge|upgrade|full-upgrade|dist-upgrade|build-dep|"
            "satisfy|markauto",
            "-[otc]",
        ),
    ),
    _rule(
        "packages.dnf",
        2,
        _word("dnf|yum|microdnf|tdnf"),
        _verb(
            "install|reinstall|remove|erase|update|upgrade|downgrade|autoremove|distro-sync|swap|groupinstall|"
            "groupremove|localinstall"
        ),
    ),
    _rule(
        "packages.zypper",
        2,
        _word("zypper"),
        _verb("install|in|remove|rm|update|up|dist-upgrade|dup|patch|addrepo|ar|removerepo|rr"),
    ),
    _rule(
        "packages.pacman",
        2,
        _word("pacman"),
        _later(r"-[RU][A-Za-z]*|-S(?![A-Za-z]*[sigl])[A-Za-z]*|--(?:sync|remove|upgrade)"),
    ),
    _rule("packages.apk", 2, _word("apk"), _verb("add|del|upgrade|fix")),
    _rule(
        "packages.dpkg",
        2,
        _word("dpkg"),
        _later(r"-[A-Za-z]*[irP]|--(?:install|remove|purge|unpack|configure)"),
    ),
    _rule(
        "packages.rpm",
        2,
        _word("rpm"),
        _later(r"-[iUFe][A-Za-z]*|--(?:install|upgrade|freshen|erase|import)"),
    ),
    _rule(
        "packages.snap",
        2,
        _word("snap|flatpak|brew"),
        _verb("install|remove|uninstall|reinstall|refresh|revert|update|upgrade|rm"),
    ),
    _rule(
        "packages.pip",
        2,
        _word("pip|pip3|pipx", suffix=r"[\d.]*+"),
        _verb("install|uninstall|reinstall|inject"),
    ),
    _rule(
        "packages.npm",
        2,
        _word("npm|pnpm|yarn|bun"),
        _verb("install|i|ci|uninstall|un|remove|rm|r|add|update|up|upgrade|link|prune"),
    ),
    _rule("packages.gem", 2, _word("gem|cargo"), _verb("install|uninstall|update")),
    _rule(
        "packages.conda",
        2,
        _word("conda|mamba|micromamba"),
        _verb("install|remove|uninstall|update|upgrade|create"),
    ),
    _rule("packages.composer", 2, _word("composer"), _verb("install|require|remove|update")),
    _rule("packages.go", 2, _word("go"), _verb("install|get")),
    # containers and clusters (tier 2): any subcommand that is not a known read
    _rule(
        "containers.docker",
        2,
        _word("docker|podman|nerdctl", suffix="(?:-compose)?+"),
        rf"{_options('-[Hcl]|--(?:context|host|config|log-level)')}{_SP}"
        rf"(?:(?:{_CONTAINER_OBJECTS}){_END}{_options('-[fp]|--(?:file|project-name)')}{_SP})?+"
        rf"(?!(?:{_CONTAINER_READS}){_END})[a-z]",
    ),
    _rule(
        "containers.crictl",
        2,
        _word("crictl"),
        rf"{_options()}{_SP}(?!(?:ps|images|img|pods|inspect|inspecti|inspectp|logs|stats|statsp|info|"
        rf"version|config){_END})[a-z]",
    ),
    _rule(
        "containers.kubectl",
        2,
        _word("kubectl|oc|kubecolor|k3s kubectl|microk8s kubectl|microk8s.kubectl"),
        rf"{_options('-n|--namespace|--context|--cluster|--kubeconfig|--user|-s|--server|--as|-l|--selector')}"
        rf"{_SP}(?!(?:{_KUBE_READS}){_END})[a-z]",
    ),
    _rule(
        "containers.helm",
        2,
        _word("helm"),
        rf"{_options('-n|--namespace|--kube-context|--kubeconfig')}{_SP}(?!(?:{_HELM_READS}){_END})[a-z]",
    ),
    # ownership and permissions (tier 2)
    _rule("permissions.change", 2, _command("chmod|chown|chgrp|setfacl|chattr|setcap|chcon")),
    # writes into /etc (tier 2)
    _rule("etc_writes.redirect", 2, _literal(">", "/etc"), rf"[>|]?+[ \t]*+{_ETC}"),
    _rule("etc_writes.dd", 2, _word("dd"), _later(f"of={_ETC}")),
    _rule("etc_writes.tee", 2, _word("tee"), _later(_ETC)),
    _rule(
        "etc_writes.copy_into",
        2,
        _word("cp|install|ln|rsync|scp"),
        _later(rf"(?:-t|--target-directory)(?:=|{_SP}){_ETC}|{_ETC}[^\s;&|()]*+{_TARGET}"),
    ),
    _rule(
        "etc_writes.modify",
        2,
        _word("mv|rm|rmdir|unlink|touch|mkdir|truncate|vi|vim|nvim|nano|emacs|ed|crudini|augtool|patch"),
        _later(_ETC),
    ),
    # in-place edits (tier 2)
    _rule("inplace_edit.sed", 2, _word("sed|gsed"), _later(r"-[A-Za-z]*i|--in-place")),
    _rule("inplace_edit.perl", 2, _word("perl|ruby"), _later(r"-[A-HJ-LN-Za-ln-z0-9]*i")),
    _rule("inplace_edit.awk", 2, _word("awk|gawk"), _later(rf"-i{_SP}[\"']?+inplace|--include=inplace")),
    # privilege escalation and account changes (tier 2)
    _rule("privilege.escalate", 2, _command("sudo|sudoedit|doas|pkexec|su|run0")),
    _rule(
        "privilege.accounts",
        2,
        _command(
            "useradd|adduser|usermod|groupadd|addgroup|groupmod|gpasswd|passwd|chpasswd|chage|visudo|vipw|vigr|newusers"
        ),
    ),
)
