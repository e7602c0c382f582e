"""Output schemas (``outputSchema``) of the tools.

Every model has the common fields of :class:`ToolOutput`. A field without a default is
present in every successful result of the tool (``null`` only where its type says so); a
field with a default is absent where it does not apply (``X | SkipJsonSchema[None]``: absent,
never null). A failed call carries ``tier`` and ``error`` plus whatever partial output it
collected. ``relay_shell.tools.schemas`` turns this into the wire schema: ``required`` lists
what every result carries (``tier``), and an ``anyOf`` says a result has either every field
without a default (a success) or ``error``. ``tests/tools/test_output_schemas.py`` checks
real results, successes and failures, against the wire schemas closed.

The annotations here are evaluated where they are written (no ``from __future__ import
annotations``): pydantic would otherwise compile each one from its string at import, the
larger part of what this module costs a start-up.
"""

from typing import Annotated, Literal

from pydantic import BaseModel as _PydanticModel
from pydantic import ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from relay_shell.vocabulary import ErrorKind


class BaseModel(_PydanticModel):
    """The base of every model here: declarations whose validators and serializers pydantic builds
    at their first use (a schema derived, a value validated), not when this module is imported
    (the server lists the tools from the generated listing and shapes results as plain data)."""

    model_config = ConfigDict(defer_build=True)


class ErrorInfo(BaseModel):
    """Why a call failed, for programs (``kind``) and for people (``message``).

    A denial names the ``rule`` and ``mode`` (and, from a parse, the ``subcommand`` that drove
    it and whether the call is ``opaque``); an invalid argument is named in ``argument``.
    """

    kind: ErrorKind
    message: str
    tier: int | SkipJsonSchema[None] = None
    reason: str | SkipJsonSchema[None] = None
    rule: str | None = None
    mode: str | None = None
    subcommand: str | SkipJsonSchema[None] = None
    opaque: bool | SkipJsonSchema[None] = None
    argument: str | SkipJsonSchema[None] = None
    confirm_token: str | SkipJsonSchema[None] = None


class ToolOutput(BaseModel):
    tier: int | None = Field(description="Tier the call was classified as (0-3); null when refused before")
    notes: Annotated[list[str], WithJsonSchema({"type": "array"})] = Field(
        default_factory=list, description="Clamped bounds and other remarks (strings)"
    )
    error: ErrorInfo | SkipJsonSchema[None] = Field(default=None, description="Set when isError is true")


class RunningFields(BaseModel):
    """Fields of a command that may outlive its call (docs/adr/0017-jobs-and-tasks.md).

    A call that ends within ``yield_after`` says ``status: done``; one still running says
    ``running`` with the ``job_id`` it continues as, and lacks what only a finished call has.
    """

    status: Literal["done", "running"] = Field(
        description="done: finished within yield_after; running: still going as job job_id (read it with "
        "session_recv, stop it with session_kill)"
    )
    job_id: str | SkipJsonSchema[None] = Field(
        default=None, description="Running: the job (job-...) the call continues as"
    )
    call_id: str | SkipJsonSchema[None] = Field(
        default=None, description="The call's id, on its audit records and its job's"
    )
    elapsed_ms: int | SkipJsonSchema[None] = Field(
        default=None, description="Running: how long the call ran before it yielded"
    )


class CapturedOutput(ToolOutput):
    """Fields of a bounded output capture (docs/adr/0008-output-capture.md); a running call's
    output so far carries ``output`` and ``output_bytes`` only."""

    output: str = Field(description="Merged output (head + tail when truncated); empty when split")
    stdout: str | SkipJsonSchema[None] = Field(
        default=None, description="stdout when streams were kept separate"
    )
    stderr: str | SkipJsonSchema[None] = Field(
        default=None, description="stderr when streams were kept separate"
    )
    truncated: bool | SkipJsonSchema[None] = Field(default=None, description="Done: output was cut")
    output_bytes: int = Field(description="Total bytes the command produced (so far, when running)")
    stream_sha256: str | SkipJsonSchema[None] = Field(
        default=None, description="Done: SHA-256 of the full raw output stream"
    )
    binary: bool | SkipJsonSchema[None] = None


class ExecResult(CapturedOutput, RunningFields):
    exit_code: int | None = Field(
        default=None, description="Done: exit status; 128+N when killed by signal N"
    )
    signal: str | None = Field(default=None, description="Done: the signal that ended it")
    duration_ms: int | SkipJsonSchema[None] = None
    timeout_s: float = Field(description="Effective timeout after clamping")
    host: str | None = Field(default=None, description="user@host:port of a remote command; null locally")


class AuditTailResult(ToolOutput):
    records: list[dict[str, object]]
    count: int
    path: str


class PolicyInfo(BaseModel):
    mode: str
    confirm_tier3: str = Field(description="off, elicit or token")
    deny_list: bool = Field(description="Whether RELAY_SHELL_POLICY_DENY is set")
    allow_list: bool = Field(description="Whether RELAY_SHELL_POLICY_ALLOW is set")
    allow_protected: bool
    deny: str | SkipJsonSchema[None] = Field(
        default=None, description="The deny regex (admin principals only)"
    )
    allow: str | SkipJsonSchema[None] = Field(
        default=None, description="The allow regex (admin principals only)"
    )


class JobsInfo(BaseModel):
    count: int = Field(description="Jobs running or ended and not yet read")
    max: int = Field(description="RELAY_SHELL_MAX_JOBS")


class ServerInfoResult(ToolOutput):
    version: str
    transport: str
    patterns_version: str
    policy: PolicyInfo = Field(description="mode, confirm_tier3, the deny and allow lists")
    limits: dict[str, float | int]
    jobs: JobsInfo
    containment: str = Field(description="cgroup or subreaper: how call processes are contained")
    tasks: list[str] = Field(description="MCP task protocol generations served")
    audit: dict[str, object] = Field(description="path, format, health, chain, anchor, ship")
    ssh: dict[str, object]
    identity: dict[str, object]
    counts: dict[str, int]


OWNER_DESCRIPTION = "The principal that opened it; null without OAuth"


class SessionRow(BaseModel):
    """One session, as shell_spawn, ssh_spawn and the session_* tools report it."""

    session_id: str
    kind: str
    host: str | None
    command: str
    cols: int
    rows: int
    age_s: float
    idle_s: float
    bytes_buffered: int
    bytes_produced: int
    bytes_dropped: int
    state: str
    exit_code: int | None
    outcome: str | None = Field(
        default=None, description="A job's end: ok, failed, timeout, cancelled, error"
    )
    owner: str | None = Field(default=None, description=OWNER_DESCRIPTION)


class SessionStarted(ToolOutput):
    """What shell_spawn and ssh_spawn started: the session, where and what it runs, its terminal.

    Its counters (age, bytes) start at zero and are read with session_list."""

    session_id: str
    kind: str = Field(description="local, ssh")
    host: str | None = Field(description="user@host:port of an SSH session; null locally")
    command: str
    cols: int
    rows: int
    state: str
    owner: str | None


class SessionSent(ToolOutput):
    """What session_send did: the bytes it typed, and the session's state after them."""

    session_id: str
    bytes_sent: int = Field(description="Bytes typed (data, Enter, keys)")
    state: str


class SessionResized(ToolOutput):
    """What session_resize did: the terminal's new size."""

    session_id: str
    cols: int
    rows: int


class SessionKilled(ToolOutput):
    """What session_kill did: the session's or job's state after the signal (or the close)."""

    session_id: str
    state: str = Field(description="ended once closed; a signalled session kept open may still run")
    exit_code: int | None
    outcome: str | SkipJsonSchema[None] = Field(
        default=None, description="A job: how it ended (ok, failed, timeout, cancelled, error)"
    )


class CursorPosition(BaseModel):
    row: int = Field(description="0-based")
    col: int = Field(description="0-based")


class ScreenView(BaseModel):
    """A rendered terminal screen (session_recv in screen mode)."""

    rows: list[str] = Field(description="Rows; trailing blanks and empty rows trimmed")
    cursor: CursorPosition
    title: str
    width: int = Field(description="Terminal columns")
    height: int = Field(description="Terminal rows")


ROWS_OF_ANOTHER_TOOL = {"type": "array", "items": {"type": "object"}}
"""The wire schema of rows whose fields another tool's schema declares (docs/adr/0020-tool-listing-budget.md)."""

HostStatusName = Literal["ok", "failed", "timeout", "unreachable", "denied", "skipped"]
RECAP_DESCRIPTION = (
    "Host count per status; when the rollout stopped (max_fail exceeded, a canary failed) also "
    "aborted: true and reason"
)


class FanoutHostRow(BaseModel):
    host: str
    status: HostStatusName
    exit_code: int | None
    output: str
    truncated: bool
    output_bytes: int
    stream_sha256: str | None
    duration_ms: int
    reason: str | None
    batch: int | None = Field(description="Batch number (0 = canaries); null when denied")


class SessionRecvResult(ToolOutput):
    session_id: str
    mode: Literal["stream", "screen"] = Field(
        description="stream: output text; screen: the rendered screen (output = its rows joined)"
    )
    screen: ScreenView | SkipJsonSchema[None] = Field(default=None, description="In screen mode")
    output: str
    bytes: int
    matched: bool | None = Field(description="Whether `until` matched (null without until)")
    timed_out: bool
    ended: bool
    exit_code: int | None
    dropped_bytes: int
    stdout: str | SkipJsonSchema[None] = Field(
        default=None, description="A job with separate streams: its stdout since the last read"
    )
    stderr: str | SkipJsonSchema[None] = Field(
        default=None, description="A job with separate streams: its stderr since the last read"
    )
    state: str | SkipJsonSchema[None] = Field(default=None, description="A job: running or ended")
    outcome: str | SkipJsonSchema[None] = Field(
        default=None, description="An ended job: ok, failed, timeout, cancelled, error"
    )
    signal: str | None = Field(default=None, description="An ended job killed by a signal: its name")
    output_bytes: int | SkipJsonSchema[None] = Field(
        default=None, description="An ended job: bytes its whole stream held"
    )
    stream_sha256: str | None = Field(
        default=None, description="An ended job: SHA-256 of its whole raw stream"
    )
    results: Annotated[list[FanoutHostRow], WithJsonSchema(ROWS_OF_ANOTHER_TOOL)] | SkipJsonSchema[None] = (
        Field(default=None, description="An ended fan-out job: its per-host rows, as ssh_fanout returns them")
    )


class SessionListResult(ToolOutput):
    sessions: list[SessionRow]
    count: int


class FanoutResult(ToolOutput, RunningFields):
    fanout_id: str | SkipJsonSchema[None] = Field(
        default=None, description="Done: fo-...: select its hosts later with failed:/ok:/skipped:<id>"
    )
    results: list[FanoutHostRow] | SkipJsonSchema[None] = Field(
        default=None, description="Done: one row per host, in input order"
    )
    recap: dict[str, int | bool | str] | SkipJsonSchema[None] = Field(
        default=None, description=RECAP_DESCRIPTION
    )
    output: str | SkipJsonSchema[None] = Field(default=None, description="Running: the progress so far")
    output_bytes: int | SkipJsonSchema[None] = Field(default=None, description="Running: bytes of progress")
    timeout_s: float | SkipJsonSchema[None] = Field(default=None, description="Running: the whole deadline")


class HostCheckRow(BaseModel):
    host: str
    ok: bool
    reason: str | None
    detail: str | None
    latency_ms: int | None
    reused: bool | None = Field(description="The round trip went over a pooled connection")


class HostCheckResult(ToolOutput):
    hosts: list[HostCheckRow]
    ok: int
    total: int


class ScannedKeyRow(BaseModel):
    key_type: str
    known_hosts_line: str
    fingerprint_sha256: str


class KeyscanHostRow(BaseModel):
    host: str
    error: str | None
    keys: list[ScannedKeyRow]


class KeyscanResult(ToolOutput):
    hosts: list[KeyscanHostRow]


class HostSpecRow(BaseModel):
    alias: str
    hostname: str
    user: str
    port: int
    identity_files: list[str]
    known_hosts: str
    jump: list[str]
    tags: list[str]
    source: str


class HostsResult(ToolOutput):
    hosts: list[HostSpecRow]
    count: int


class TransferredFileRow(BaseModel):
    path: str = Field(description="Relative to the destination ('' when the destination is the file)")
    size: int


class UploadHostRow(BaseModel):
    host: str
    status: HostStatusName
    destination: str
    file_count: int
    bytes: int
    sha256: str | None = Field(description="SHA-256 of a single file (read on this side)")
    duration_ms: int
    reason: str | None
    batch: int | None


class TransferOutput(ToolOutput):
    """A copy to or from one host (ssh_download, and ssh_upload with ``host``)."""

    direction: str = Field(description="upload or download")
    source: str
    bytes: int = Field(description="Bytes moved")
    timeout_s: float
    host: str | SkipJsonSchema[None] = Field(default=None, description="One host: user@host:port")
    destination: str | SkipJsonSchema[None] = Field(
        default=None, description="One host: where the source landed (inside an existing directory)"
    )
    files: list[TransferredFileRow] | SkipJsonSchema[None] = Field(
        default=None, description="One host: at most 200 of file_count"
    )
    file_count: int | SkipJsonSchema[None] = None
    directory_count: int | SkipJsonSchema[None] = None
    link_count: int | SkipJsonSchema[None] = None
    bytes_total: int | SkipJsonSchema[None] = Field(
        default=None, description="One host: bytes of the regular files in the source"
    )
    sha256: str | None = Field(
        default=None, description="One host: SHA-256 of a single file (read on this side)"
    )
    duration_ms: int | SkipJsonSchema[None] = None


class UploadOutput(TransferOutput):
    """An upload: to one host (the fields of :class:`TransferOutput`) or, with ``hosts``, to many."""

    fanout_id: str | SkipJsonSchema[None] = Field(
        default=None, description="With hosts: the id of this upload"
    )
    results: list[UploadHostRow] | SkipJsonSchema[None] = Field(
        default=None, description="With hosts: one row per host"
    )
    recap: dict[str, int | bool | str] | SkipJsonSchema[None] = Field(
        default=None, description=RECAP_DESCRIPTION
    )


class ForwardRow(BaseModel):
    forward_id: str
    kind: str = Field(description="L (local), R (remote) or D (SOCKS5)")
    spec: str = Field(description="The spec with the actual listening port")
    bind: str
    listen_port: int
    host: str
    target: str | None = Field(description="dhost:dport; null for SOCKS")
    bytes_sent: int = Field(description="Bytes from the listening side to the destination")
    bytes_received: int = Field(description="Bytes from the destination back")
    connections: int
    active_connections: int
    age_s: float
    state: str = Field(description="open, broken (SSH connection lost) or closed")
    last_error: str | None
    owner: str | None = Field(default=None, description=OWNER_DESCRIPTION)


class ForwardOpened(ToolOutput):
    """What ssh_forward opened: the forward, where it listens and where it leads.

    Its counters (traffic, connections) start at zero and are read with ssh_forward_list."""

    forward_id: str
    kind: str = Field(description="L (local), R (remote) or D (SOCKS5)")
    spec: str = Field(description="The spec with the actual listening port")
    bind: str
    listen_port: int
    host: str
    target: str | None = Field(description="dhost:dport; null for SOCKS")
    state: str = Field(description="open")
    owner: str | None


class ForwardClosed(ToolOutput):
    """What ssh_forward_close did: the forward's final state and traffic."""

    forward_id: str
    state: str = Field(description="closed")
    bytes_sent: int = Field(description="Bytes from the listening side to the destination, in all")
    bytes_received: int = Field(description="Bytes from the destination back, in all")
    connections: int = Field(description="Connections it carried, in all")


class ForwardListOutput(ToolOutput):
    forwards: list[ForwardRow]
    count: int


def own_fields(model: type[ToolOutput]) -> tuple[str, ...]:
    """The fields ``model`` declares beyond the common ones: what a shaper copies from a row."""
    return tuple(name for name in model.model_fields if name not in ToolOutput.model_fields)
