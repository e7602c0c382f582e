"""A reader for the parts of OpenSSH's ``ssh_config`` that decide where a connection goes.

Supported, with OpenSSH semantics: ``Host`` blocks with patterns (``*``, ``?``, ``!``
negation, case-insensitive), options before the first ``Host`` applying to every host,
"first obtained value wins" across every matching block, ``IdentityFile`` accumulating,
``Include`` (globs; relative paths are taken from the including file's directory, which
for ``~/.ssh/config`` is OpenSSH's rule), ``%h``/``%d``/``%u``/``%r``/``%p``/``%%``
tokens in ``HostName`` and ``IdentityFile``, ``ProxyJump none``.

Read but deliberately not evaluated: ``Match`` blocks (their options are skipped, so a
``Match`` never changes a connection silently) and ``ProxyCommand`` (reported, so a host
routed through a local command is refused instead of being dialled directly: relay-shell
runs no hidden local commands). Every other keyword is ignored.
"""

from __future__ import annotations

import fnmatch
import getpass
import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from relay_shell.errors import ConfigError

MAX_INCLUDE_DEPTH = 16
MAX_CONFIG_BYTES = 4 * 1024 * 1024
WANTED = frozenset({"hostname", "user", "port", "identityfile", "proxyjump", "proxycommand"})
_KEYWORD = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+|$)(.*)")


@dataclass(frozen=True)
class Option:
    keyword: str  # lower case
    value: str
    origin: str  # "file:line", for error messages


@dataclass
class Block:
    """``patterns`` is ``None`` for the options before the first Host (they match every host)."""

    patterns: tuple[str, ...] | None
    options: list[Option] = field(default_factory=list)
    is_match_block: bool = False

    def matches(self, name: str) -> bool:
        if self.is_match_block:
            return False
        if self.patterns is None:
            return True
        name = name.lower()
        positive = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if fnmatch.fnmatchcase(name, pattern.lstrip("!").lower()):
                if negated:
                    return False
                positive = True
        return positive


@dataclass(frozen=True)
class HostConfig:
    """The options ``ssh_config`` gives one host name (``None`` / empty when unset)."""

    hostname: str | None
    user: str | None
    port: str | None
    identity_files: tuple[str, ...]
    proxy_jump: str | None
    proxy_command: str | None  # relay-shell never runs it: such hosts are refused, not reached directly
    origins: dict[str, str]


class SshConfig:
    """A parsed ssh_config file: the blocks in order, and the literal aliases they name."""

    def __init__(self, path: Path | None, blocks: list[Block]) -> None:
        self.path = path
        self.blocks = blocks

    @classmethod
    def empty(cls) -> SshConfig:
        return cls(None, [])

    @classmethod
    def load(cls, path: Path) -> SshConfig:
        """Parse ``path``; a missing file is an empty config.

        Raises:
            ConfigError: unreadable file, unterminated quote, bad Include, ``Host`` without patterns.
        """
        if not path.exists():
            return cls(path, [])
        blocks: list[Block] = [Block(patterns=None)]
        _parse_file(path, blocks, depth=0)
        return cls(path, blocks)

    def aliases(self) -> list[str]:
        """Host patterns without wildcards or negation, in file order, de-duplicated."""
        found: dict[str, None] = {}
        for block in self.blocks:
            if block.patterns is None or block.is_match_block:
                continue
            for pattern in block.patterns:
                if not any(char in pattern for char in "*?!"):
                    found.setdefault(pattern, None)
        return list(found)

    def lookup(self, name: str) -> HostConfig:
        """Collect the options for ``name`` as OpenSSH does: first value wins, IdentityFile accumulates."""
        first: dict[str, Option] = {}
        identity_files: list[Option] = []
        for block in self.blocks:
            if not block.matches(name):
                continue
            for option in block.options:
                if option.keyword == "identityfile":
                    identity_files.append(option)
                else:
                    first.setdefault(option.keyword, option)
        origins = {keyword: option.origin for keyword, option in first.items()}
        if identity_files:
            origins["identityfile"] = identity_files[0].origin

        def value(keyword: str) -> str | None:
            option = first.get(keyword)
            return option.value if option else None

        proxy_jump, proxy_command = value("proxyjump"), value("proxycommand")
        return HostConfig(
            hostname=value("hostname"),
            user=value("user"),
            port=value("port"),
            identity_files=tuple(option.value for option in identity_files),
            proxy_jump=None if proxy_jump is None or proxy_jump.lower() == "none" else proxy_jump,
            proxy_command=None if proxy_command is None or proxy_command.lower() == "none" else proxy_command,
            origins=origins,
        )


def expand_tokens(text: str, *, host: str, remote_user: str, port: int, origin: str) -> str:
    """Expand OpenSSH ``%`` tokens (``%h %d %u %r %p %%``) and a leading ``~``.

    Raises:
        ConfigError: an unknown token (OpenSSH refuses those too).
    """
    home = str(Path.home())
    values = {"h": host, "d": home, "u": _local_user(), "r": remote_user, "p": str(port), "%": "%"}

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token not in values:
            raise ConfigError(f"{origin}: unsupported token %{token} in {text!r}")
        return values[token]

    expanded = re.sub(r"%(.)", replace, text)
    if expanded == "~" or expanded.startswith("~/"):
        expanded = home + expanded[1:]
    return expanded


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _parse_file(path: Path, blocks: list[Block], *, depth: int) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f"{path}: Include nested deeper than {MAX_INCLUDE_DEPTH} levels")
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            _parse_line(line, f"{path}:{number}", path, blocks, depth)


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ssh_config: {exc.strerror or exc}") from exc


def _parse_line(line: str, origin: str, path: Path, blocks: list[Block], depth: int) -> None:
    match = _KEYWORD.match(line)
    if not match:
        raise ConfigError(f"{origin}: cannot parse line {line[:80]!r}")
    keyword, arguments = match.group(1).lower(), _split_arguments(match.group(2).strip(), origin)
    if keyword == "host":
        if not arguments:
            raise ConfigError(f"{origin}: Host needs at least one pattern")
        blocks.append(Block(patterns=tuple(arguments)))
    elif keyword == "match":
        blocks.append(Block(patterns=(), is_match_block=True))
    elif keyword == "include":
        including_block = blocks[-1]
        for included in _include_paths(arguments, path, origin):
            _parse_file(included, blocks, depth=depth + 1)
        if blocks[-1] is not including_block:  # back to the including file's Host condition
            blocks.append(Block(including_block.patterns, is_match_block=including_block.is_match_block))
    elif keyword in WANTED:
        if not arguments:
            raise ConfigError(f"{origin}: {match.group(1)} needs a value")
        blocks[-1].options.append(Option(keyword, " ".join(arguments), origin))


def _split_arguments(rest: str, origin: str) -> list[str]:
    if "#" in rest:  # OpenSSH allows trailing comments
        rest = re.sub(r"\s+#.*$", "", rest)
    try:
        return shlex.split(rest, posix=True)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc


def _include_paths(arguments: list[str], including: Path, origin: str) -> list[Path]:
    if not arguments:
        raise ConfigError(f"{origin}: Include needs a path")
    found: list[Path] = []
    for argument in arguments:
        pattern = os.path.expanduser(argument)
        if not os.path.isabs(pattern):
            pattern = str(including.parent / pattern)
        found.extend(Path(match) for match in sorted(glob.glob(pattern)) if Path(match).is_file())
    return found
