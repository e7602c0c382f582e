"""The exception tree. Executors raise these; the pipeline turns them into results.

::

    RelayError                         kind        meaning
    ├── ConfigError                    (startup)   a setting, regex or file is invalid
    ├── InvalidInput                   invalid     an argument is malformed (names it)
    ├── PolicyDenied                   denied      the policy refused the call
    ├── ConfirmationRequired           confirm_required  tier 3 needs a human yes / a token
    ├── AuditUnavailable               unavailable the audit sink cannot be written
    ├── ShuttingDown                   unavailable the server is stopping: no new calls
    ├── ExecTimeout                    timeout     the deadline passed (carries partial output)
    ├── ExecFailed                     failed      could not run at all
    │   ├── SpawnFailed                            local process could not start
    │   ├── RemoteUnreachable                      DNS, refused, timeout, auth, host key
    │   ├── RemoteFailed                           SSH channel / SFTP / forward failure
    │   └── SessionEnded                           the session is gone
    ├── SessionNotFound                invalid     unknown session id
    ├── LimitReached                   failed      a configured cap is full (names it)
    └── JobStopped                     cancelled   a job was killed before it ended

``kind`` (a :class:`relay_shell.vocabulary.ErrorKind`) is the machine-readable
``structuredContent.error.kind``. Cancellation of a call is not an
exception of ours: ``asyncio.CancelledError`` is always re-raised after the audit record.
:class:`JobStopped` is the final result of a job that was killed (session_kill, a task's
cancel, shutdown): its call had already returned, so there is nothing to re-raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay_shell.vocabulary import ErrorKind  # defined once there; imported from here too


class RelayError(Exception):
    """Base of every error relay-shell raises on purpose."""

    kind: ErrorKind = ErrorKind.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RelayError):
    """Configuration is invalid; the command exits 2 with this message."""


class InvalidInput(RelayError):
    """An argument is malformed. ``argument`` names it."""

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"invalid argument `{argument}`: {problem}")
        self.argument = argument
        self.problem = problem


@dataclass(frozen=True)
class Decision:
    """What the admission stage concluded about one call."""

    allowed: bool
    tier: int
    reason: str
    rule: str | None = None
    mode: str = ""
    subcommand: str | None = None
    """The normalised simple command that drove the decision, when a parse named one."""
    opaque: bool | None = None
    """Whether the call runs text the classifier cannot see through, when that is known."""


class PolicyDenied(RelayError):
    kind: ErrorKind = ErrorKind.DENIED

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class ConfirmationRequired(RelayError):
    """Tier 3 under ``CONFIRM_TIER3``: declined, no elicitation, or a token was issued."""

    kind: ErrorKind = ErrorKind.CONFIRM_REQUIRED

    def __init__(self, message: str, *, tier: int = 3, token: str | None = None) -> None:
        super().__init__(message)
        self.tier = tier
        self.token = token


class AuditUnavailable(RelayError):
    kind: ErrorKind = ErrorKind.UNAVAILABLE


class ShuttingDown(RelayError):
    """A call arrived after shutdown began (SIGTERM, SIGINT): refused, audited."""

    kind: ErrorKind = ErrorKind.UNAVAILABLE


@dataclass
class PartialOutput:
    """Output collected before a failure, already shaped (bounded)."""

    text: str = ""
    fields: dict[str, object] = field(default_factory=dict)


class ExecTimeout(RelayError):
    kind: ErrorKind = ErrorKind.TIMEOUT

    def __init__(self, message: str, partial: PartialOutput | None = None) -> None:
        super().__init__(message)
        self.partial = partial or PartialOutput()


class ExecFailed(RelayError):
    kind: ErrorKind = ErrorKind.FAILED


class SpawnFailed(ExecFailed):
    pass


class RemoteUnreachable(ExecFailed):
    """Could not reach or authenticate to a host. ``reason`` is one short word."""

    def __init__(self, host: str, reason: str, detail: str) -> None:
        super().__init__(f"{host}: {reason}: {detail}")
        self.host = host
        self.reason = reason
        self.detail = detail


class RemoteFailed(ExecFailed):
    """An SSH channel, SFTP or forward failed. ``reason`` is one short word when known."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class SessionEnded(ExecFailed):
    pass


class SessionNotFound(RelayError):
    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, session_id: str) -> None:
        super().__init__(f"invalid argument `session_id`: no session {session_id!r} (see session_list)")
        self.session_id = session_id


class LimitReached(RelayError):
    """A configured cap is full. ``limit`` is the setting's variable name."""

    kind: ErrorKind = ErrorKind.FAILED

    def __init__(self, limit: str, value: int, what: str) -> None:
        super().__init__(f"limit reached: {what} ({limit}={value})")
        self.limit = limit
        self.value = value


class JobStopped(RelayError):
    """A job was killed (session_kill, a task's cancel, shutdown) before its work ended."""

    kind: ErrorKind = ErrorKind.CANCELLED
