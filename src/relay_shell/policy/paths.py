"""Paths: collapse them, tell what writing one does, and recognise the relay's own files.

* :func:`collapse` makes a path absolute against a working directory and removes ``//``,
  ``/./`` and ``..`` (``/etc//shadow``, ``/etc/./shadow`` and ``/tmp/../etc/shadow`` are
  ``/etc/shadow``).
* :func:`write_verdict` says what a write to a path is: ``/dev/null`` and the terminal are
  harmless (tier 0), a block device or ``/proc/sysrq-trigger`` is tier 3, ``/etc``, system
  directories, ``~/.ssh``, crontabs, systemd units, shell start-up files and git hooks are
  tier 2, anything else tier 1.
* :class:`Protected` holds the relay's own files (audit file and directory, OAuth state,
  env file, the working directory's ``.env``, inventory, ssh_config, known_hosts, session
  recordings) and says whether a path names one: literally, after collapse, through a
  symlink or hard link, through ``/proc/self/root``/``/proc/<pid>/root``, anything under
  ``/proc/<server pid>/``, or through a glob that can match one.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from relay_shell.config import Settings
from relay_shell.policy.model import IRREVERSIBLE, READ_ONLY, REVERSIBLE, STATEFUL, Verdict
from relay_shell.policy.words import Word

SYSTEM_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
VARIABLE_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
"""``$NAME`` or ``${NAME}`` (group 1: the name)."""
_HARMLESS_DEVICES = re.compile(r"/dev/(?:null|zero|full|stdout|stderr|stdin|tty\w*|pts/\w+|fd/[0-2])")
_OTHER_SAFE_DEVICES = re.compile(r"/dev/(?:u?random|console|kmsg|log|fd/\d+|shm/.*|tcp/.*|udp/.*|mqueue/.*)")
_SYSTEM_TREES = (
    "/etc",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/var/spool/cron",
)
_RC_FILES = {".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc", ".zprofile"}
_RC_FILES |= {".zshenv", ".zlogin", ".inputrc", ".kshrc", ".cshrc", ".tcshrc", ".pam_environment"}
_PROC_ROOT = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/root(?=/|$)")
_GLOB_CHARS = re.compile(r"[*?\[]")


def collapse(path: str, cwd: str | None) -> str | None:
    """``path`` made absolute against ``cwd`` and normalised; None when relative and ``cwd`` is unknown."""
    if not path.startswith("/"):
        if cwd is None:
            return None
        path = f"{cwd}/{path}"
    collapsed = posixpath.normpath(path)
    return "/" + collapsed.lstrip("/") if collapsed.startswith("//") else collapsed


def strip_proc_root(path: str) -> str:
    """``/proc/self/root/etc/x`` and ``/proc/1/root/etc/x`` are ``/etc/x``."""
    while True:
        stripped = _PROC_ROOT.sub("", path, count=1)
        if stripped == path:
            return path
        path = stripped or "/"


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def write_verdict(path: str | None, *, home: str | None) -> Verdict:
    """What writing to ``path`` (absolute and collapsed; None: unknown) is, by place."""
    if path is None:
        return Verdict(IRREVERSIBLE, "writes.unknown_target")
    path = strip_proc_root(path)
    special = _special_file(path)
    if special is not None:
        return special
    if _under(path, "/etc"):
        return Verdict(STATEFUL, "etc_writes.write")
    if any(_under(path, tree) for tree in _SYSTEM_TREES) and not _under(path, "/usr/local"):
        return Verdict(STATEFUL, "etc_writes.system_path")
    if posixpath.dirname(path) in _path_directories(os.environ.get("PATH", "")):
        return Verdict(STATEFUL, "etc_writes.path_directory")
    return _startup_verdict(path, home)


def _special_file(path: str) -> Verdict | None:
    """Devices, ``/proc`` and ``/sys``: harmless sinks, disks, the sysrq trigger, kernel state."""
    if _HARMLESS_DEVICES.fullmatch(path):
        return Verdict(READ_ONLY, "read.known_safe")
    if path.startswith("/dev/") and not _OTHER_SAFE_DEVICES.fullmatch(path):
        return Verdict(IRREVERSIBLE, "disk.write_device")
    if path == "/proc/sysrq-trigger":
        return Verdict(IRREVERSIBLE, "power.sysrq")
    if _under(path, "/proc/sys") or _under(path, "/sys"):
        return Verdict(STATEFUL, "services.kernel_state")
    return None


@lru_cache(maxsize=8)
def _path_directories(search_path: str) -> frozenset[str]:
    """The directories of the server's PATH: a file written there becomes a command."""
    return frozenset(posixpath.normpath(entry) for entry in search_path.split(":") if entry.startswith("/"))


def _startup_verdict(path: str, home: str | None) -> Verdict:
    parts = path.split("/")
    if ".ssh" in parts:
        return Verdict(STATEFUL, "etc_writes.ssh_dir")
    if parts[-1] in _RC_FILES:
        return Verdict(STATEFUL, "etc_writes.startup_file")
    if "systemd" in parts and (".config" in parts or _under(path, "/run")):
        return Verdict(STATEFUL, "etc_writes.systemd_unit")
    if ".git" in parts:
        index = parts.index(".git")
        if parts[index + 1 : index + 2] in (["hooks"], ["config"]):
            return Verdict(STATEFUL, "etc_writes.git_hooks")
    if home and _under(path, f"{home}/.config/autostart"):
        return Verdict(STATEFUL, "etc_writes.startup_file")
    return Verdict(REVERSIBLE, "writes.file")


def is_system_path(path: str) -> bool:
    """Whether ``path`` is in a root-owned system directory (``/usr/bin``, ``/bin``...)."""
    return posixpath.dirname(path) in SYSTEM_DIRS


@dataclass(frozen=True)
class ProtectedEntry:
    """One protected file or tree. ``tree``: anything under it counts too."""

    path: str
    label: str
    tree: bool = False


@dataclass
class Protected:
    """The relay's own files; :meth:`names` answers whether a path names one of them."""

    entries: tuple[ProtectedEntry, ...]
    server_pid: int
    enforce: bool = True
    _inodes: dict[tuple[int, int], str] = field(default_factory=dict)
    _resolved: dict[str, str | None] = field(default_factory=dict)
    _inodes_at: float = -1e9
    _directories: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expanded: list[ProtectedEntry] = []
        for entry in self.entries:
            expanded.append(entry)
            real = os.path.realpath(entry.path)
            if real != entry.path:
                expanded.append(ProtectedEntry(real, entry.label, entry.tree))
        self.entries = tuple(expanded)
        self.refresh()

    def refresh(self) -> None:
        """Forget what the file system said: called before each call is classified (a link
        made by an earlier call must be seen). The protected files' own inodes (for hard links
        to them) are read again when older than a second (a rotated audit file has a new one)."""
        self._resolved = {}
        self._directories = {}
        now = time.monotonic()
        if now - self._inodes_at < 1.0:
            return
        self._inodes_at = now
        inodes: dict[tuple[int, int], str] = {}
        for entry in self.entries:
            if "*" in entry.path:
                continue
            try:
                status = os.stat(entry.path)
            except (OSError, ValueError):
                continue
            inodes[(status.st_dev, status.st_ino)] = entry.label
        self._inodes = inodes

    @classmethod
    def from_settings(
        cls, settings: Settings, *, server_pid: int | None = None, cwd: str | None = None
    ) -> Protected:
        """The protected files of a server running with ``settings`` in ``cwd``."""
        workdir = cwd or os.getcwd()
        entries: list[ProtectedEntry] = []

        def add(path: Path | None, label: str, *, tree: bool = False) -> None:
            if path is not None:
                absolute = collapse(str(settings.expand(path)), workdir)
                if absolute is not None and absolute != "/":
                    entries.append(ProtectedEntry(absolute, label, tree))

        audit = settings.expand(settings.audit_path)
        add(audit, "the audit file")
        add(audit.parent, "the audit directory")
        for sibling in (f"{audit.name}.*", f"{audit.stem}.*"):
            entries.append(
                ProtectedEntry(str(collapse(str(audit.parent / sibling), workdir)), "the audit file")
            )
        add(settings.auth_state_dir, "the OAuth state directory", tree=True)
        add(settings.env_file, "the env file")
        add(Path(workdir) / ".env", "the .env file of the server's working directory")
        add(settings.inventory, "the inventory")
        add(settings.ssh_config, "the ssh_config")
        add(settings.ssh_known_hosts_file, "the known_hosts file")
        add(settings.session_record_dir, "the session recording directory", tree=True)
        return cls(tuple(entries), server_pid or os.getpid(), not settings.policy_allow_protected)

    def names(self, path: str) -> str | None:
        """The label of the protected file ``path`` (absolute, collapsed) names, or None."""
        path = strip_proc_root(path)
        if _under(path, f"/proc/{self.server_pid}"):
            return "the relay server's own process"
        label = self.lexical(path)
        if label is not None:
            return label
        cache = self._resolved  # one dict per call (another thread may refresh meanwhile)
        if path in cache:
            return cache[path]
        label = cache[path] = self._through_links(path)
        return label

    def lexical(self, path: str) -> str | None:
        """The label ``path`` names by its text alone (no symlink or inode resolution)."""
        for entry in self.entries:
            if "*" in entry.path:
                if fnmatch.fnmatchcase(path, entry.path):
                    return entry.label
            elif path == entry.path or (entry.tree and _under(path, entry.path)):
                return entry.label
        return None

    def _through_links(self, path: str) -> str | None:
        real = self._real(path)
        if real != path:
            label = self.lexical(strip_proc_root(real))
            if label is not None:
                return label
        try:
            status = os.stat(path)
        except (OSError, ValueError):
            return None
        return self._inodes.get((status.st_dev, status.st_ino))

    def _real(self, path: str) -> str:
        """``os.path.realpath`` with the directories resolved once per call: one ``lstat``
        per name when its directory was resolved before (many words share a directory)."""
        cache = self._directories
        parent, name = posixpath.split(path)
        if not name or parent == path:
            return os.path.realpath(path)
        real_parent = cache.get(parent)
        if real_parent is None:
            real_parent = cache[parent] = os.path.realpath(parent)
        joined = posixpath.join(real_parent, name)
        try:
            if not stat.S_ISLNK(os.lstat(joined).st_mode):
                return joined
        except (OSError, ValueError):
            return joined
        return os.path.realpath(joined)

    def glob_names(self, pattern: str, cwd: str | None) -> str | None:
        """The label of a protected file a glob ``pattern`` could match, or None."""
        absolute = pattern if pattern.startswith("/") else (f"{cwd}/{pattern}" if cwd else None)
        if pattern.startswith("/"):
            # a protected path written inside the glob counts as it does in a literal word
            mentioned = self.mentions(strip_proc_root(posixpath.normpath(pattern)))
            if mentioned is not None:
                return mentioned
        for entry in self.entries:
            target = entry.path
            if absolute is None:
                if _suffix_could_match(pattern, target):
                    return entry.label
            elif _could_match(strip_proc_root(posixpath.normpath(absolute)), target, entry.tree):
                return entry.label
        return None

    def mentions(self, text: str) -> str | None:
        """The label of a protected path written literally inside ``text`` (a command string)."""
        for entry in self.entries:
            if "*" not in entry.path and entry.path in text:
                return entry.label
        return None


def _could_match(pattern: str, target: str, tree: bool) -> bool:
    if "**" in pattern:
        prefix = _GLOB_CHARS.split(pattern, 1)[0]
        return target.startswith(prefix) or _under(prefix.rstrip("/"), target)
    pattern_parts = pattern.strip("/").split("/")
    target_parts = target.strip("/").split("/")
    if len(pattern_parts) < len(target_parts):
        return False
    if len(pattern_parts) > len(target_parts) and not tree:
        return False
    return all(_component(t, p) for p, t in zip(pattern_parts, target_parts, strict=False))


def _component(name: str, pattern: str) -> bool:
    """Shell glob matching of one path component (a leading dot is only matched literally).

    A protected ``name`` may itself hold ``*`` (``audit.jsonl.*``, the rotated files): the glob
    could match one of them when their literal beginnings agree (``audit.jsonl?1`` matches
    ``audit.jsonl.1``), which rounds up."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    if "*" in name:
        fixed = name.split("*", 1)[0]
        literal = _GLOB_CHARS.split(pattern, 1)[0]
        return fixed.startswith(literal) or literal.startswith(fixed)
    return fnmatch.fnmatchcase(name, pattern)


def _suffix_could_match(pattern: str, target: str) -> bool:
    pattern_parts = [part for part in pattern.split("/") if part not in ("", ".")]
    target_parts = target.strip("/").split("/")
    if not pattern_parts or len(pattern_parts) > len(target_parts):
        return False
    tail = target_parts[-len(pattern_parts) :]
    return all(_component(t, p) for p, t in zip(pattern_parts, tail, strict=True))


def relative_names(protected: Protected, path: str) -> str | None:
    """With an unknown working directory: the protected file a relative ``path`` could be."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    for entry in protected.entries:
        target = entry.path.strip("/").split("/")
        if "*" not in entry.path and len(parts) <= len(target) and target[-len(parts) :] == parts:
            return entry.label
    return None


def protected_rule(label: str) -> str:
    """The rule name for a protected label: ``the audit file`` -> ``protected.audit_file``."""
    words = re.sub(r"[^a-z0-9]+", "_", label.removeprefix("the ").lower()).strip("_")
    return "protected." + words


def labels(entries: Iterable[ProtectedEntry]) -> list[str]:
    """The labels of ``entries`` without repeats, for documentation and ``--explain``."""
    return list(dict.fromkeys(entry.label for entry in entries))


def _known_expansions(word: Word) -> str | None:
    """The word's text with ``$HOME``/``$PWD`` filled in; None for a glob or other expansions."""
    if word.literal:
        return word.text
    if word.glob and not word.may_split:
        return None
    text = VARIABLE_REFERENCE.sub(
        lambda m: os.environ.get(m.group(1), m.group(0)) if m.group(1) in ("HOME", "PWD") else m.group(0),
        word.text,
    )
    return None if "$" in text or "`" in text else text


def _protected_path(protected: Protected, candidate: str, cwd: str | None, remote: bool) -> str | None:
    """The protected file ``candidate`` names, read from ``cwd`` (lexically on a remote host)."""
    if remote:
        return protected.lexical(candidate) if candidate.startswith("/") else None
    path = collapse(candidate, cwd)
    return relative_names(protected, candidate) if path is None else protected.names(path)


def word_names_protected(
    protected: Protected, word: Word, cwd: str | None, remote: bool, *, literal_only: bool = False
) -> str | None:
    """The label of the protected file a word names (a path, ``--opt=path``, a glob), or None.

    ``literal_only``: only a protected path written inside the word counts (the argument of
    ``echo`` is not opened).
    """
    text = _known_expansions(word)
    if text is None:
        return protected.glob_names(word.text, cwd if not remote else None) if word.glob else None
    mentioned = protected.mentions(text) if "/" in text else None
    if mentioned is not None or literal_only:
        return mentioned
    candidates = [text, text.split("=", 1)[1]] if "=" in text else [text]
    for candidate in candidates:
        if candidate and not candidate.startswith("-") and candidate != ".":
            label = _protected_path(protected, candidate, cwd, remote)
            if label is not None:
                return label
    return None
