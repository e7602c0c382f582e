"""Storage of the builtin OAuth server: records, the state file, its locks and directory.

Everything lives in one JSON file, ``state.json``, inside a 0700 directory. Codes and
tokens appear only as SHA-256 digests (:func:`token_digest`). :meth:`StateStore.update`
is the single way to change it: a read-modify-write under an ``asyncio.Lock`` (this
process) and an ``fcntl.flock`` on ``state.lock`` (other processes), written to a
temporary file, fsynced and ``os.replace``-d into place, so concurrent requests see the
changes of one another in order and nothing is spent twice. Every table is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal, TypeVar

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import BaseModel, Field, ValidationError

from relay_shell.errors import ConfigError, RelayError
from relay_shell.vocabulary import ErrorKind

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
MAX_PENDING_CODES = 32
MAX_GRANTS = 32
MAX_SPENT = 2048
LOCK_WAIT_S = 5.0
LOCK_POLL_S = 0.01

T = TypeVar("T")


class OAuthStateUnavailable(RelayError):
    """The state file cannot be read, written or locked (the request fails, nothing is issued)."""

    kind: ErrorKind = ErrorKind.UNAVAILABLE


def token_digest(value: str) -> str:
    """The hex SHA-256 of a code or token: the only form in which one is stored."""
    return hashlib.sha256(value.encode()).hexdigest()


class CodeRecord(BaseModel):
    """A pending authorization code (stored under its digest)."""

    client_id: str
    scopes: list[str]
    expires_at: float
    code_challenge: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    resource: str | None
    subject: str | None
    family: str


class TokenRecord(BaseModel):
    """A live access or refresh token (stored under its digest); ``partner`` is the other half."""

    client_id: str
    scopes: list[str]
    expires_at: float
    resource: str | None
    subject: str | None
    family: str
    partner: str


class SpentRecord(BaseModel):
    """A used code or rotated refresh token, kept until it would have expired to catch replays."""

    family: str
    expires_at: float


class OAuthState(BaseModel):
    """Everything in ``state.json``."""

    version: Literal[1] = 1
    client: OAuthClientInformationFull | None = None
    codes: dict[str, CodeRecord] = Field(default_factory=dict)
    access: dict[str, TokenRecord] = Field(default_factory=dict)
    refresh: dict[str, TokenRecord] = Field(default_factory=dict)
    spent: dict[str, SpentRecord] = Field(default_factory=dict)

    def prune(self, now: float) -> None:
        """Drop everything expired, then the oldest entries of any table over its cap."""
        tables: tuple[dict[str, CodeRecord] | dict[str, TokenRecord] | dict[str, SpentRecord], ...]
        tables = (self.codes, self.access, self.refresh, self.spent)
        for table in tables:
            for key in [key for key, record in table.items() if record.expires_at <= now]:
                del table[key]
        for capped, cap in ((self.codes, MAX_PENDING_CODES), (self.spent, MAX_SPENT)):
            for key in _oldest(capped, len(capped) - cap):
                del capped[key]
        for key in _oldest(self.refresh, len(self.refresh) - MAX_GRANTS):
            if key in self.refresh:
                self.revoke_family(self.refresh[key].family)

    def revoke_family(self, family: str) -> None:
        """Revoke every live code and token of one authorization."""
        for table in (self.codes, self.access, self.refresh):
            for key in [key for key, record in table.items() if record.family == family]:
                del table[key]

    def replayed(self, digest: str) -> bool:
        """True (and the family revoked) when ``digest`` is a code or refresh token already spent."""
        spent = self.spent.get(digest)
        if spent is None:
            return False
        self.revoke_family(spent.family)
        logger.warning("a spent OAuth code or refresh token was presented again: its grant is revoked")
        return True


def _oldest(
    table: dict[str, CodeRecord] | dict[str, TokenRecord] | dict[str, SpentRecord], count: int
) -> list[str]:
    """The keys of the ``count`` entries of ``table`` that expire first."""
    if count <= 0:
        return []
    return sorted(table, key=lambda key: table[key].expires_at)[:count]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_state_dir(path: Path) -> None:
    """Refuse an OAuth state directory that others could read or that cannot be used.

    An existing ``path`` must be a directory with no group/world permission bits, owned by
    this user (any owner is accepted for root) and writable. A missing ``path`` is fine when
    it can be created (it is not created here: ``--check-config`` has no side effects).

    Raises:
        ConfigError: naming the path and, for a permission problem, its mode.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        parent = _nearest_existing(path.parent)
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"OAuth state directory {path} does not exist and {parent} is not writable"
            ) from None
        return
    except OSError as exc:
        raise ConfigError(f"OAuth state directory {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"OAuth state directory {path} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"OAuth state directory {path} has mode {mode:04o}: it must not be group/world accessible"
            f" (chmod 700 {path})"
        )
    euid = os.geteuid()
    if euid not in (0, info.st_uid):
        raise ConfigError(
            f"OAuth state directory {path} is owned by uid {info.st_uid}, not by this user ({euid})"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"OAuth state directory {path} is not writable by this user")


def prepare_state_dir(path: Path) -> None:
    """Create ``path`` 0700 when missing, then :func:`check_state_dir` it (never loosen or fix it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)  # the umask can only remove bits, but be explicit
    check_state_dir(path)


class StateStore:
    """The state file of one directory; :meth:`update` is atomic across tasks and processes."""

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Use ``state_dir`` (created 0700 when missing) and check the state file parses.

        Raises:
            ConfigError: the directory is refused by :func:`check_state_dir`, or the state
                file cannot be read or is corrupt.
        """
        self._state_dir = state_dir
        self._state_path = state_dir / STATE_FILE
        self._lock_path = state_dir / LOCK_FILE
        self._clock = clock
        self._lock = asyncio.Lock()
        prepare_state_dir(state_dir)
        try:
            self.read()
        except OAuthStateUnavailable as exc:
            raise ConfigError(exc.message) from exc

    def read(self) -> OAuthState:
        """The current state (lock-free: the file is only ever replaced whole).

        Raises:
            OAuthStateUnavailable: the file cannot be read or does not parse.
        """
        try:
            raw = self._state_path.read_bytes()
        except FileNotFoundError:
            return OAuthState()
        except OSError as exc:
            raise OAuthStateUnavailable(f"cannot read {self._state_path}: {exc.strerror or exc}") from exc
        try:
            return OAuthState.model_validate_json(raw)
        except ValidationError as exc:
            raise OAuthStateUnavailable(
                f"{self._state_path} is corrupt: {exc.error_count()} problem(s)"
            ) from exc

    def _write(self, text: str) -> None:
        """Atomically replace the state file: temp file (0600), fsync, rename, fsync the directory."""
        temporary = self._state_dir / f".{STATE_FILE}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                data = memoryview(text.encode())
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self._state_path)
            directory = os.open(self._state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise OAuthStateUnavailable(f"cannot write {self._state_path}: {exc.strerror or exc}") from exc

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """This process's lock, then the cross-process ``flock`` (polled, bounded)."""
        async with self._lock:
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise OAuthStateUnavailable(f"cannot open {self._lock_path}: {exc.strerror or exc}") from exc
            try:
                deadline = time.monotonic() + LOCK_WAIT_S
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise OAuthStateUnavailable(f"{self._lock_path} stayed locked") from None
                        await asyncio.sleep(LOCK_POLL_S)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    async def update(self, change: Callable[[OAuthState], T]) -> T:
        """Run ``change`` on the current state under both locks; persist it if it changed."""
        async with self._exclusive():
            state = self.read()
            before = state.model_dump_json()
            state.prune(self._clock())
            result = change(state)
            after = state.model_dump_json()
            if after != before:
                self._write(after)
            return result
