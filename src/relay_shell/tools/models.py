"""Output schemas (``outputSchema``) of the tools.

Every model has the common fields of :class:`ToolOutput` (tier, notes, error), and every
other field has a default, so the structured content of an error result (which carries
``error`` and whatever partial output exists) fits the same schema as a success.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from relay_shell.vocabulary import ErrorKind


class ErrorInfo(BaseModel):
    """Why a call failed, for programs (``kind``) and for people (``message``).

    A denial names the ``rule`` and ``mode`` (and, from a parse, the ``subcommand`` that drove
    it and whether the call is ``opaque``); an invalid argument is named in ``argument``.
    """

    kind: ErrorKind
    message: str
    tier: int | None = None
    reason: str | None = None
    rule: str | None = None
    mode: str | None = None
    subcommand: str | None = None
    opaque: bool | None = None
    argument: str | None = None
    confirm_token: str | None = None


class ToolOutput(BaseModel):
    tier: int | None = Field(default=None, description="Tier the call was classified as (0-3)")
    notes: list[str] = Field(default_factory=list, description="Clamped bounds and other remarks")
    error: ErrorInfo | None = Field(default=None, description="Set when isError is true")


class CapturedOutput(ToolOutput):
    """Fields of a bounded output capture (docs/adr/0008-output-capture.md)."""

    output: str = Field(default="", description="Merged output (head + tail when truncated)")
    stdout: str | None = Field(default=None, description="stdout when streams were kept separate")
    stderr: str | None = Field(default=None, description="stderr when streams were kept separate")
    truncated: bool = False
    output_bytes: int = Field(default=0, description="Total bytes the command produced")
    stream_sha256: str | None = Field(default=None, description="SHA-256 of the full raw output stream")
    binary: bool = False


class RunningFields(BaseModel):
    """Fields of a command that may outlive its call (docs/adr/0014-jobs-and-tasks.md)."""

    status: Literal["done", "running"] | None = Field(
        default=None,
        description="done: finished within yield_after; running: still going as job job_id (read it with "
        "session_recv, stop it with session_kill); fields only a finished call has are then absent",
    )
    job_id: str | None = Field(default=None, description="The job (job-...) a running call continues as")
    call_id: str | None = Field(default=None, description="The call's id, on its audit records and its job's")
    elapsed_ms: int | None = Field(
        default=None, description="Running: how long the call ran before it yielded"
    )


class ExecResult(CapturedOutput, RunningFields):
    exit_code: int | None = Field(default=None, description="Exit status; 128+N when killed by signal N")
    signal: str | None = None
    duration_ms: int = 0
    timeout_s: float | None = Field(default=None, description="Effective timeout after clamping")
    host: str | None = Field(default=None, description="user@host:port of a remote command")


class AuditTailResult(ToolOutput):
    records: list[dict[str, object]] = Field(default_factory=list)
    count: int = 0
    path: str = ""


class ServerInfoResult(ToolOutput):
    version: str = ""
    transport: str = ""
    policy_mode: str = ""
    confirm_tier3: str = ""
    limits: dict[str, float | int] = Field(default_factory=dict)
    audit: dict[str, object] = Field(default_factory=dict)
    ssh: dict[str, object] = Field(default_factory=dict)
    identity: dict[str, object] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    patterns_version: str = ""
    containment: str = Field(default="", description="cgroup or subreaper: how call processes are contained")
    jobs: dict[str, int] = Field(
        default_factory=dict, description="count: running and unread jobs; max: RELAY_SHELL_MAX_JOBS"
    )
    tasks: list[str] = Field(default_factory=list, description="MCP Tasks protocol generations served")


class SessionResult(ToolOutput):
    session_id: str = ""
    kind: str = ""
    host: str | None = None
    command: str = ""
    cols: int = 0
    rows: int = 0
    age_s: float = 0.0
    idle_s: float = 0.0
    bytes_buffered: int = 0
    bytes_produced: int = 0
    bytes_dropped: int = 0
    state: str = ""
    exit_code: int | None = None
    bytes_sent: int | None = None
    outcome: str | None = Field(
        default=None, description="A job's end: ok, failed, timeout, cancelled, error"
    )


class CursorPosition(BaseModel):
    row: int = Field(description="0-based")
    col: int = Field(description="0-based")


class ScreenView(BaseModel):
    """A rendered terminal screen (session_recv in screen mode)."""

    rows: list[str] = Field(default_factory=list, description="Rows; trailing blanks and empty rows trimmed")
    cursor: CursorPosition
    title: str = ""
    width: int = Field(default=0, description="Terminal columns")
    height: int = Field(default=0, description="Terminal rows")


HostStatusName = Literal["ok", "failed", "timeout", "unreachable", "denied", "skipped"]
RECAP_DESCRIPTION = (
    "Host count per status; when the rollout stopped (max_fail exceeded, a canary failed) also "
    "aborted: true and reason"
)


class FanoutHostRow(BaseModel):
    host: str
    status: HostStatusName
    exit_code: int | None = None
    output: str = ""
    truncated: bool = False
    output_bytes: int = 0
    stream_sha256: str | None = None
    duration_ms: int = 0
    reason: str | None = None
    batch: int | None = Field(default=None, description="Batch number (0 = canaries); null when denied")


class SessionRecvResult(ToolOutput):
    session_id: str = ""
    mode: Literal["stream", "screen"] | None = Field(
        default=None,
        description="stream: output text; screen: the rendered screen (output = its rows joined)",
    )
    screen: ScreenView | None = None
    output: str = ""
    bytes: int = 0
    matched: bool | None = Field(default=None, description="Whether `until` matched (null without until)")
    timed_out: bool = False
    ended: bool = False
    exit_code: int | None = None
    dropped_bytes: int = 0
    stdout: str | None = Field(
        default=None, description="A job with separate streams: its stdout since the last read"
    )
    stderr: str | None = Field(
        default=None, description="A job with separate streams: its stderr since the last read"
    )
    state: str | None = Field(default=None, description="A job: running or ended")
    outcome: str | None = Field(
        default=None, description="An ended job: ok, failed, timeout, cancelled, error"
    )
    signal: str | None = Field(default=None, description="An ended job killed by a signal: its name")
    output_bytes: int | None = Field(default=None, description="An ended job: bytes its whole stream held")
    stream_sha256: str | None = Field(
        default=None, description="An ended job: SHA-256 of its whole raw stream"
    )
    results: list[FanoutHostRow] | None = Field(
        default=None, description="An ended fan-out job: its per-host rows"
    )


class SessionListResult(ToolOutput):
    sessions: list[SessionResult] = Field(default_factory=list)
    count: int = 0


class FanoutResult(ToolOutput, RunningFields):
    fanout_id: str = Field(
        default="", description="fo-...: select its hosts later with failed:/ok:/skipped:<id>"
    )
    results: list[FanoutHostRow] = Field(default_factory=list, description="One row per host, in input order")
    recap: dict[str, int | bool | str] = Field(default_factory=dict, description=RECAP_DESCRIPTION)
    output: str | None = Field(default=None, description="Running: the progress so far (hosts done)")
    output_bytes: int | None = Field(default=None, description="Running: bytes of progress so far")
    timeout_s: float | None = Field(default=None, description="Running: the whole fan-out's deadline")


class HostCheckRow(BaseModel):
    host: str
    ok: bool
    reason: str | None = None
    detail: str | None = None
    latency_ms: int | None = None
    reused: bool | None = Field(default=None, description="The round trip went over a pooled connection")


class HostCheckResult(ToolOutput):
    hosts: list[HostCheckRow] = Field(default_factory=list)
    ok: int = 0
    total: int = 0


class ScannedKeyRow(BaseModel):
    key_type: str
    known_hosts_line: str
    fingerprint_sha256: str


class KeyscanHostRow(BaseModel):
    host: str
    error: str | None = None
    keys: list[ScannedKeyRow] = Field(default_factory=list)


class KeyscanResult(ToolOutput):
    hosts: list[KeyscanHostRow] = Field(default_factory=list)


class HostSpecRow(BaseModel):
    alias: str
    hostname: str
    user: str
    port: int
    identity_files: list[str] = Field(default_factory=list)
    known_hosts: str = ""
    jump: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    source: str = ""


class HostsResult(ToolOutput):
    hosts: list[HostSpecRow] = Field(default_factory=list)
    count: int = 0


class TransferredFileRow(BaseModel):
    path: str = Field(description="Relative to the destination ('' when the destination is the file)")
    size: int = 0


class UploadHostRow(BaseModel):
    host: str
    status: HostStatusName
    destination: str = ""
    file_count: int = 0
    bytes: int = 0
    sha256: str | None = Field(default=None, description="SHA-256 of a single file (read on this side)")
    duration_ms: int = 0
    reason: str | None = None
    batch: int | None = None


class TransferOutput(ToolOutput):
    direction: str = Field(default="", description="upload or download")
    host: str = ""
    source: str = ""
    destination: str = Field(default="", description="Where the source landed (inside an existing directory)")
    files: list[TransferredFileRow] = Field(default_factory=list, description="At most 200 of file_count")
    file_count: int = 0
    directory_count: int = 0
    link_count: int = 0
    bytes: int = Field(default=0, description="Bytes moved")
    bytes_total: int = Field(default=0, description="Bytes of the regular files in the source")
    sha256: str | None = Field(default=None, description="SHA-256 of a single file (read on this side)")
    duration_ms: int = 0
    timeout_s: float | None = None
    fanout_id: str | None = Field(default=None, description="With hosts: the id of this multi-host upload")
    results: list[UploadHostRow] | None = Field(default=None, description="With hosts: one row per host")
    recap: dict[str, int | bool | str] | None = Field(default=None, description=RECAP_DESCRIPTION)


class ForwardRow(BaseModel):
    forward_id: str = ""
    kind: str = Field(default="", description="L (local), R (remote) or D (SOCKS5)")
    spec: str = Field(default="", description="The spec with the actual listening port")
    bind: str = ""
    listen_port: int = 0
    host: str = ""
    target: str | None = Field(default=None, description="dhost:dport; null for SOCKS")
    bytes_sent: int = Field(default=0, description="Bytes from the listening side to the destination")
    bytes_received: int = Field(default=0, description="Bytes from the destination back")
    connections: int = 0
    active_connections: int = 0
    age_s: float = 0.0
    state: str = Field(default="", description="open, broken (SSH connection lost) or closed")
    last_error: str | None = None


class ForwardOutput(ToolOutput, ForwardRow):
    pass


class ForwardListOutput(ToolOutput):
    forwards: list[ForwardRow] = Field(default_factory=list)
    count: int = 0
