"""Package managers: system, language and tool packages.

Family ``packages`` (tier 2: installs, removals and upgrades in every package manager;
an install from the working tree also runs its build or lifecycle scripts, so it is
opaque). Containers, clusters and cloud command lines are in
:mod:`relay_shell.policy.rules.containers`.
"""

from __future__ import annotations

from relay_shell.policy.model import REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.rules.base import Invocation, rule


def _operands(invocation: Invocation) -> list[str]:
    """Literal operands, skipping options and the values of ``-x VALUE`` options we know take one."""
    return [word.text for word in invocation.args if word.literal and not word.text.startswith("-")]


def _first(invocation: Invocation, skip_values: frozenset[str] = frozenset()) -> str | None:
    """The first operand (the subcommand), skipping ``-x VALUE`` pairs named in ``skip_values``."""
    args = invocation.args
    index = 0
    while index < len(args):
        word = args[index]
        if not word.literal:
            return "?"
        text = word.text
        if text.startswith("-"):
            index += 2 if text in skip_values else 1
            continue
        return text
    return None


_APT = {
    "install",
    "reinstall",
    "remove",
    "purge",
    "autoremove",
    "autopurge",
    "upgrade",
    "full-upgrade",
    "dist-upgrade",
    "build-dep",
    "satisfy",
    "markauto",
    "unmarkauto",
    "hold",
    "unhold",
    "dselect-upgrade",
}
_DNF = {
    "install",
    "reinstall",
    "remove",
    "erase",
    "update",
    "upgrade",
    "downgrade",
    "autoremove",
    "distro-sync",
    "swap",
    "groupinstall",
    "groupremove",
    "groupupdate",
    "localinstall",
    "localupdate",
    "group",
    "module",
    "history",
}
_ZYPPER = {
    "install",
    "in",
    "remove",
    "rm",
    "update",
    "up",
    "dist-upgrade",
    "dup",
    "patch",
    "addrepo",
    "ar",
    "removerepo",
    "rr",
    "modifyrepo",
    "mr",
    "addlock",
    "al",
}
_APK = {"add", "del", "upgrade", "fix", "cache"}
_SNAP = {
    "install",
    "remove",
    "uninstall",
    "reinstall",
    "refresh",
    "revert",
    "update",
    "upgrade",
    "rm",
    "enable",
    "disable",
    "link",
    "unlink",
    "switch",
    "tap",
    "untap",
    "pin",
    "unpin",
    "mask",
    "unmask",
}
_PIP = {"install", "uninstall", "reinstall", "inject", "upgrade", "sync", "add", "remove"}
_NODE = {
    "install",
    "i",
    "ci",
    "uninstall",
    "un",
    "remove",
    "rm",
    "r",
    "add",
    "update",
    "up",
    "upgrade",
    "link",
    "prune",
    "dedupe",
    "rebuild",
    "unlink",
}
_GEM = {"install", "uninstall", "update", "add", "remove", "upgrade"}
_CONDA = {"install", "remove", "uninstall", "update", "upgrade", "create"}
_COMPOSER = {"install", "require", "remove", "update", "upgrade", "reinstall", "create-project"}
_GO = {"install", "get"}
_TABLE: dict[str, set[str]] = {
    "apt": _APT, "apt-get": _APT, "aptitude": _APT, "dnf": _DNF, "yum": _DNF, "microdnf": _DNF, "tdnf": _DNF,
    "zypper": _ZYPPER, "apk": _APK, "snap": _SNAP, "flatpak": _SNAP, "brew": _SNAP, "pip": _PIP, "pip3": _PIP,
    "pipx": _PIP, "uv": _PIP, "npm": _NODE, "pnpm": _NODE, "yarn": _NODE, "bun": _NODE, "gem": _GEM,
    "cargo": _GEM, "conda": _CONDA, "mamba": _CONDA, "micromamba": _CONDA, "composer": _COMPOSER, "go": _GO,
    "apt-mark": {"hold", "unhold", "auto", "manual", "minimize-manual"},
}  # fmt: skip
_RUNS_WORKING_TREE = {"npm", "pnpm", "yarn", "bun", "composer"}


@rule(*_TABLE, worst=Verdict(STATEFUL, "packages.install", "opaque: a package command with expansions"))
def packages(invocation: Invocation) -> Verdict:
    name = invocation.name
    if name not in _TABLE:  # a versioned name (pip3.11)
        name = name.rstrip("0123456789.") if name.rstrip("0123456789.") in _TABLE else "pip"
    if name in ("cargo", "go", "uv"):
        from relay_shell.policy.rules.runners import runner_subcommand

        special = runner_subcommand(invocation)
        if special is not None:
            return special
    verb = _first(invocation, frozenset({"-o", "-t", "-c", "--config", "--prefix", "-C"}))
    if name == "uv" and verb == "pip":
        later = _operands(invocation)[1:2]
        verb = later[0] if later else None
    if verb == "?":
        return opaque("packages.install", f"{name} with an expansion as its subcommand")
    if verb is None or verb not in _TABLE[name]:
        if name in _RUNS_WORKING_TREE and verb not in _NODE_QUERIES:
            return opaque("opaque.task_runner", f"{name} {verb or ''} runs scripts of the working tree")
        return Verdict(REVERSIBLE, "packages.query")
    return _install(invocation, name, verb)


_NODE_QUERIES = {
    "ls",
    "list",
    "view",
    "info",
    "show",
    "outdated",
    "why",
    "--version",
    "-v",
    "help",
    "search",
    "config",
    "audit",
}
_LIFECYCLE = {
    "install",
    "i",
    "ci",
    "add",
    "update",
    "up",
    "upgrade",
    "rebuild",
    "require",
    "reinstall",
    "create-project",
}
_FROM_PATH = (".", "..", "-e", "--editable", "-r", "--requirement")


def _install(invocation: Invocation, name: str, verb: str) -> Verdict:
    """An install or removal: tier 2; opaque when it runs code of the working tree."""
    verdict = Verdict(STATEFUL, "packages.install")
    if name in _RUNS_WORKING_TREE and verb in _LIFECYCLE:
        return verdict.worst(opaque("opaque.task_runner", f"{name} {verb} runs lifecycle scripts"))
    texts = [word.text for word in invocation.args]
    if name in ("pip", "pip3", "uv", "pipx") and any(
        text in _FROM_PATH or text.startswith(("./", "/", "../", "file:", "git+")) for text in texts
    ):
        return verdict.worst(
            opaque("opaque.task_runner", f"{name} installs from a path and runs its build code")
        )
    return verdict


@rule("pacman", "yay", "paru")
def pacman(invocation: Invocation) -> Verdict:
    for text in invocation.literal_texts():
        if text.startswith("--") and text.startswith(("--sync", "--remove", "--upgrade")):
            return Verdict(STATEFUL, "packages.pacman")
        if text.startswith("-") and not text.startswith("--"):
            letters = text[1:]
            if letters[:1] in ("R", "U") or (letters[:1] == "S" and not set(letters[1:]) & set("sigl")):
                return Verdict(STATEFUL, "packages.pacman")
    if invocation.dynamic():
        return Verdict(STATEFUL, "packages.pacman")
    return Verdict(REVERSIBLE, "packages.query")


@rule("dpkg", "rpm", "dpkg-reconfigure")
def low_level_packages(invocation: Invocation) -> Verdict:
    if invocation.name == "dpkg-reconfigure" or invocation.dynamic():
        return Verdict(STATEFUL, "packages.install")
    changes_dpkg = set("irP")
    changes_rpm = set("iUFe")
    longs = (
        "--install",
        "--remove",
        "--purge",
        "--unpack",
        "--configure",
        "--upgrade",
        "--freshen",
        "--erase",
        "--import",
        "--set-selections",
        "--clear-selections",
        "--triggers-only",
        "--reinstall",
    )
    for text in invocation.literal_texts():
        if text.startswith(longs):
            return Verdict(STATEFUL, "packages.install")
        if text.startswith("-") and not text.startswith("--"):
            changes = changes_dpkg if invocation.name == "dpkg" else changes_rpm
            if text[1:2] in changes:
                return Verdict(STATEFUL, "packages.install")
    return Verdict(REVERSIBLE, "packages.query")
