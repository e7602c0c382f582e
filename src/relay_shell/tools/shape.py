"""The one shaper of a command's report, and the notes of clamped bounds.

:func:`exec_outcome` turns an :class:`~relay_shell.report.ExecReport` (local or remote)
into the fields of :class:`~relay_shell.tools.models.ExecResult` and the one-line header a
model reads. The structured data is plain data (no validation of our own results on the hot
path); ``tests/tools/test_output_schemas.py`` validates every tool's results against its
declared schema.
"""

from __future__ import annotations

from relay_shell.capture import OutputCapture, SplitCapture, capture_fields, render_capture
from relay_shell.governance.bounds import Clamped
from relay_shell.governance.call import Outcome
from relay_shell.report import ExecReport


def exec_outcome(report: ExecReport, timeout_s: float) -> Outcome:
    """``exit 0 · 0.42 s`` (plus the host, the signal and truncation), then the output."""
    fields = capture_fields(report.capture)
    header = f"exit {report.exit_code} · {report.duration_ms / 1000:.2f} s"
    if report.host is not None:
        header = f"{report.host}: {header}"
    if report.signal:
        header += f" · killed by SIG{report.signal}"
    if report.capture.truncated:
        header += f" · truncated ({report.capture.total} bytes total)"
    body = render_capture(report.capture)
    remarks = [*report.notes(), *truncation_hint(report.capture)]
    notes = "".join(f"\nnote: {note}" for note in remarks)
    data: dict[str, object] = {
        **fields,
        "exit_code": report.exit_code,
        "signal": report.signal,
        "duration_ms": report.duration_ms,
        "timeout_s": timeout_s,
        "host": report.host,
    }
    return Outcome(
        text=f"{header}\n{body}{notes}",
        data=data,
        exit_code=report.exit_code,
        stream_sha256=report.capture.sha256,
        stream_len=report.capture.total,
        truncated=report.capture.truncated,
        audit_extra={"left_running": report.left_running} if report.left_running else {},
    )


MORE_OUTPUT = (
    "narrow the command (| head -n 100, | tail -n 100, | grep PATTERN, | sed -n '200,300p') or raise "
    "max_output; to follow a long stream, run it in a session (shell_spawn / ssh_spawn) and read it "
    "with session_recv"
)
"""How a model gets the rest of a truncated output (docs/adr/0008-output-capture.md)."""


def truncation_hint(capture: OutputCapture | SplitCapture) -> list[str]:
    """The note that tells a model how to see what a result leaves out; none when it shows everything."""
    parts = [capture] if isinstance(capture, OutputCapture) else [capture.stdout, capture.stderr]
    if any(part.looks_binary() for part in parts):
        return [
            f"binary output of {capture.total} bytes, not shown: convert it (| base64, | od -c | head) "
            "or write it to a file and copy that"
        ]
    if not capture.truncated:
        return []
    return [
        f"output truncated: the start and the end of {capture.total} bytes are shown; for the rest, {MORE_OUTPUT}"
    ]


def timeout_notes(timeout: Clamped[float]) -> list[str]:
    """The note a clamped timeout adds to the result; none when it was not clamped."""
    if not timeout.clamped:
        return []
    return [f"timeout {timeout.requested:g} s clamped to {timeout.value:g} s (RELAY_SHELL_MAX_TIMEOUT)"]


def bound_notes(timeout: Clamped[float], budget: Clamped[int]) -> list[str]:
    """The notes of a clamped timeout and a clamped output budget, in that order."""
    notes = timeout_notes(timeout)
    if budget.clamped:
        notes.append(f"max_output {budget.requested} clamped to {budget.value} bytes")
    return notes
