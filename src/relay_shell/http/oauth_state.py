"""Storage of the builtin OAuth server: records, the state file, its locks and directory.

Everything lives in one JSON file, ``state.json``, inside a 0700 directory: the client,
the authorization requests waiting for the operator's consent (``pending``, keyed by their
request id), the grants the operator consented to, and the codes and tokens of each grant.
Codes, tokens, CSRF tokens and approval codes appear only as SHA-256 digests
(:func:`token_digest`). :meth:`StateStore.update` is the single way to change it: a
read-modify-write under an ``asyncio.Lock`` (this process) and an ``fcntl.flock`` on
``state.lock`` (other processes, such as ``relay-shell --approve-login``), written to a
temporary file, fsynced and ``os.replace``-d into place, so concurrent requests see the
changes of one another in order and nothing is spent twice. Every table is bounded.

Format versions. Version 1 had no consent: every token was issued to whoever asked. Reading
a version-1 file drops its codes, tokens and grants (they were never consented to) and the
next write stores version 2; :meth:`StateStore.upgrade` does that at start, under the lock,
and reports the grants it revoked so they can be audited once. A file from a newer version
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal, TypeVar

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import BaseModel, Field, ValidationError

from relay_shell.errors import ConfigError, RelayError
from relay_shell.http.oauth_dir import prepare_state_dir
from relay_shell.vocabulary import ErrorKind

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
STATE_VERSION = 2
MAX_PENDING_CODES = 32
MAX_PENDING_REQUESTS = 32
MAX_GRANTS = 32
MAX_SPENT = 2048
MAX_REVOKED = 64
MAX_CSRF_TOKENS = 8
LOCK_WAIT_S = 5.0
LOCK_POLL_S = 0.01
SETTLED_NS = 1_000_000_000
"""A parsed state file is kept (:meth:`StateStore.snapshot`) only when it changed this long before
the parse: far coarser than any file system's timestamps, so a later change always shows."""

FileIdentity = tuple[int, int, int, int, int]

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

    @classmethod
    def for_grant(
        cls, grant: CodeRecord | TokenRecord, *, scopes: list[str], expires_at: float, partner: str
    ) -> TokenRecord:
        """A token record of ``grant``'s client, resource, subject and family."""
        return cls(
            client_id=grant.client_id,
            scopes=scopes,
            expires_at=expires_at,
            resource=grant.resource,
            subject=grant.subject,
            family=grant.family,
            partner=partner,
        )


class SpentRecord(BaseModel):
    """A used code or rotated refresh token, kept until it would have expired to catch replays."""

    family: str
    expires_at: float


class ApprovalRecord(BaseModel):
    """A one-time approval code printed by ``--approve-login`` for one pending request."""

    digest: str
    expires_at: float


class PendingRecord(BaseModel):
    """An authorization request waiting for the operator (stored under its request id).

    ``scopes`` are the scopes asked; ``attempts`` counts the proofs of presence tried (the
    request is ``dead`` after the last one allowed fails); ``csrf`` holds the digests of the
    CSRF tokens handed out with the consent form.
    """

    client_id: str
    redirect_uri: str
    redirect_uri_provided_explicitly: bool
    scopes: list[str]
    code_challenge: str
    state: str | None
    resource: str | None
    created_at: float
    expires_at: float
    attempts: int = 0
    dead: bool = False
    csrf: list[str] = Field(default_factory=list)
    approval: ApprovalRecord | None = None


ConsentMethod = Literal["passphrase", "approval_code"]


class GrantRecord(BaseModel):
    """One consent of the operator (stored under the grant id, which is its tokens' family)."""

    client_id: str
    scopes: list[str]
    created_at: float
    method: ConsentMethod


class RevokedRecord(BaseModel):
    """Why a grant was revoked (``via``: ``operator``, ``revoke_endpoint``, ``replay``,
    ``capacity``) and in which order (``serial``: the newest is the highest)."""

    via: str
    serial: int


Table = dict[str, CodeRecord] | dict[str, TokenRecord] | dict[str, SpentRecord] | dict[str, PendingRecord]


class OAuthState(BaseModel):
    """Everything in ``state.json``."""

    version: int = STATE_VERSION
    client: OAuthClientInformationFull | None = None
    pending: dict[str, PendingRecord] = Field(default_factory=dict)
    grants: dict[str, GrantRecord] = Field(default_factory=dict)
    codes: dict[str, CodeRecord] = Field(default_factory=dict)
    access: dict[str, TokenRecord] = Field(default_factory=dict)
    refresh: dict[str, TokenRecord] = Field(default_factory=dict)
    spent: dict[str, SpentRecord] = Field(default_factory=dict)
    revoked: dict[str, RevokedRecord] = Field(default_factory=dict)

    def prune(self, now: float) -> None:
        """Drop everything expired, then the oldest entries of any table over its cap.

        A grant goes when its last code and token are gone.
        """
        tables: tuple[Table, ...] = (self.pending, self.codes, self.access, self.refresh, self.spent)
        for table in tables:
            for key in [key for key, record in table.items() if record.expires_at <= now]:
                del table[key]
        capped_tables: tuple[tuple[Table, int], ...] = (
            (self.pending, MAX_PENDING_REQUESTS),
            (self.codes, MAX_PENDING_CODES),
            (self.spent, MAX_SPENT),
        )
        for capped, cap in capped_tables:
            for key in _oldest(capped, len(capped) - cap):
                del capped[key]
        for key in _oldest(self.refresh, len(self.refresh) - MAX_GRANTS):
            if key in self.refresh:
                self.revoke_family(self.refresh[key].family, via="capacity")
        live = {
            record.family for table in (self.codes, self.access, self.refresh) for record in table.values()
        }
        for grant_id in [grant_id for grant_id in self.grants if grant_id not in live]:
            del self.grants[grant_id]

    def revoke_family(self, family: str, *, via: str) -> int:
        """Revoke the grant ``family`` and every live code and token of it; how many codes and tokens went.

        A grant that existed is remembered in ``revoked`` with ``via`` (the last
        :data:`MAX_REVOKED`), so a running server can tell why a principal's access ended.
        """
        revoked = 0
        for table in (self.codes, self.access, self.refresh):
            for key in [key for key, record in table.items() if record.family == family]:
                del table[key]
                revoked += 1
        known = self.grants.pop(family, None) is not None
        if known or revoked:
            serial = max((record.serial for record in self.revoked.values()), default=0) + 1
            self.revoked.pop(family, None)
            self.revoked[family] = RevokedRecord(via=via, serial=serial)
            for old in sorted(self.revoked, key=lambda key: self.revoked[key].serial)[:-MAX_REVOKED]:
                del self.revoked[old]
        return revoked

    def replayed(self, digest: str) -> str | None:
        """The grant revoked because ``digest`` (a spent code or refresh token) came back, else ``None``."""
        spent = self.spent.get(digest)
        if spent is None:
            return None
        self.revoke_family(spent.family, via="replay")
        logger.warning("a spent OAuth code or refresh token was presented again: its grant is revoked")
        return spent.family

    def live_record[Record: CodeRecord | TokenRecord](
        self, table: dict[str, Record], digest: str, client_id: str, replays: list[str]
    ) -> Record | None:
        """The record stored in ``table`` under ``digest`` if it is ``client_id``'s, else ``None``.

        Expired entries are pruned before every change, so an expired secret is simply absent.
        An absent one goes to :meth:`replayed`, which revokes the family of a spent code or
        rotated refresh token presented again (the family is added to ``replays``).
        """
        record = table.get(digest)
        if record is None:
            family = self.replayed(digest)
            if family is not None:
                replays.append(family)
            return None
        return record if record.client_id == client_id else None

    def upgraded(self) -> list[str]:
        """Bring an older format up to :data:`STATE_VERSION`; the grants (families) this revoked.

        Version 1 issued tokens without the operator's consent: all of them are dropped.
        """
        if self.version >= STATE_VERSION:
            return []
        families = sorted(
            {record.family for table in (self.codes, self.access, self.refresh) for record in table.values()}
        )
        self.codes.clear()
        self.access.clear()
        self.refresh.clear()
        self.grants.clear()
        self.pending.clear()
        self.version = STATE_VERSION
        return families


def _oldest(table: Table, count: int) -> list[str]:
    """The keys of the ``count`` entries of ``table`` that expire first."""
    if count <= 0:
        return []
    return sorted(table, key=lambda key: table[key].expires_at)[:count]


def _identity(status: os.stat_result) -> FileIdentity:
    """What tells two versions of the state file apart: device, inode, size, mtime and ctime."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _try_flock(fd: int) -> bool:
    """Take the exclusive ``flock`` on ``fd`` if nobody holds it; False when someone does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class StateStore:
    """The state file of one directory; :meth:`update` is atomic across tasks and processes."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Use ``state_dir`` (created 0700 when missing) and check the state file parses.

        ``clock`` decides expiry; ``wall_ns`` is the real time compared with the file's change
        time by :meth:`snapshot`.

        Raises:
            ConfigError: the directory is refused by :func:`check_state_dir`, or the state
                file cannot be read or is corrupt.
        """
        self._state_dir = state_dir
        self._state_path = state_dir / STATE_FILE
        self._lock_path = state_dir / LOCK_FILE
        self._clock = clock
        self._wall_ns = wall_ns
        self._lock = asyncio.Lock()
        self._kept: tuple[FileIdentity, OAuthState] | None = None  # see snapshot()
        prepare_state_dir(state_dir)
        try:
            self.read()
        except OAuthStateUnavailable as exc:
            raise ConfigError(exc.message) from exc

    def read(self) -> OAuthState:
        """The current state (lock-free: the file is only ever replaced whole), in the current format.

        A fresh object the caller may change (:meth:`update` does).

        Raises:
            OAuthStateUnavailable: the file cannot be read, does not parse, or is from a newer version.
        """
        state, _ = self._parse()
        state.upgraded()  # an older file is never trusted as is, even before it is rewritten
        return state

    def snapshot(self) -> OAuthState:
        """The current state for reading only (a bearer check on every request uses this).

        The same answer as :meth:`read`, without reading and parsing the file again while it
        has not changed: the parsed state is kept with the identity of the file it came from
        (device, inode, size, modification and change times) and returned while a ``stat`` of
        the path shows the same identity. Any write after the parse (our atomic replace, an
        admin command's, an edit in place) gives the path a change time no earlier than the
        parse, so a parse is kept only when the file's change time is :data:`SETTLED_NS`
        older than the parse (a file written in the last second is read again each time).
        Callers must not change the returned object.

        Raises:
            OAuthStateUnavailable: the file cannot be read, does not parse, or is from a newer version.
        """
        try:
            identity = _identity(os.stat(self._state_path))
        except FileNotFoundError:
            identity = None
        except OSError as exc:
            raise OAuthStateUnavailable(f"cannot read {self._state_path}: {exc.strerror or exc}") from exc
        kept = self._kept
        if identity is not None and kept is not None and kept[0] == identity:
            return kept[1]
        parsed_at = self._wall_ns()
        state, status = self._parse()
        state.upgraded()
        self._kept = None
        if status is not None and status.st_ctime_ns <= parsed_at - SETTLED_NS:
            self._kept = (_identity(status), state)
        return state

    def _parse(self) -> tuple[OAuthState, os.stat_result | None]:
        """The file as stored (possibly an older format) and the ``fstat`` of what was read;
        an empty state and ``None`` when there is no file."""
        try:
            fd = os.open(self._state_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return OAuthState(), None
        except OSError as exc:
            raise OAuthStateUnavailable(f"cannot read {self._state_path}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "rb") as handle:
                status = os.fstat(handle.fileno())
                raw = handle.read()
        except OSError as exc:
            raise OAuthStateUnavailable(f"cannot read {self._state_path}: {exc.strerror or exc}") from exc
        try:
            state = OAuthState.model_validate_json(raw)
        except ValidationError as exc:
            raise OAuthStateUnavailable(
                f"{self._state_path} is corrupt: {exc.error_count()} problem(s)"
            ) from exc
        if state.version > STATE_VERSION:
            raise OAuthStateUnavailable(
                f"{self._state_path} has format {state.version}, newer than this relay-shell reads ({STATE_VERSION})"
            )
        return state, status

    def upgrade(self) -> list[str]:
        """Rewrite an older state file in the current format, under the file lock (blocking, bounded).

        Returns the grants (families) revoked by the upgrade, empty when the file was current;
        only the process that did the rewrite sees them.

        Raises:
            OAuthStateUnavailable: the lock stayed taken, or the file cannot be read or written.
        """
        fd = self._open_lock()
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            while not _try_flock(fd):
                if time.monotonic() >= deadline:
                    raise OAuthStateUnavailable(f"{self._lock_path} stayed locked")
                time.sleep(LOCK_POLL_S)
            state, _ = self._parse()
            if state.version >= STATE_VERSION:
                return []
            families = state.upgraded()
            self._write(state.model_dump_json())
            return families
        finally:
            os.close(fd)

    def _open_lock(self) -> int:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OAuthStateUnavailable(f"cannot open {self._lock_path}: {exc.strerror or exc}") from exc
        self._keep_owner(fd)
        return fd

    def _keep_owner(self, fd: int) -> None:
        """Run as root (an admin command), give a file we created to the directory's owner.

        So ``relay-shell --approve-login`` run by root never leaves a state file the service
        account cannot read.
        """
        if os.geteuid() != 0:
            return
        owner = os.stat(self._state_dir)
        if owner.st_uid != 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)

    def _write(self, text: str) -> None:
        """Atomically replace the state file: temp file (0600), fsync, rename, fsync the directory."""
        temporary = self._state_dir / f".{STATE_FILE}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                self._keep_owner(fd)
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
            fd = self._open_lock()
            try:
                deadline = time.monotonic() + LOCK_WAIT_S
                while not _try_flock(fd):
                    if time.monotonic() >= deadline:
                        raise OAuthStateUnavailable(f"{self._lock_path} stayed locked")
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
