"""How a PTY session is shown: a row of ``session_list`` and a line of its text,
the result of a call that started or acted on one, and its policy targets."""

from __future__ import annotations

from relay_shell.governance.call import Outcome
from relay_shell.sessions import SessionInfo
from relay_shell.tools.models import SessionStarted, own_fields

STARTED_FIELDS = own_fields(SessionStarted)


def info_fields(info: SessionInfo) -> dict[str, object]:
    """One session as a row of ``session_list``."""
    return {
        "session_id": info.session_id,
        "kind": info.kind,
        "host": info.host,
        "command": info.command,
        "cols": info.cols,
        "rows": info.rows,
        "age_s": round(info.age_s, 3),
        "idle_s": round(info.idle_s, 3),
        "bytes_buffered": info.bytes_buffered,
        "bytes_produced": info.bytes_produced,
        "bytes_dropped": info.bytes_dropped,
        "state": info.state,
        "exit_code": info.exit_code,
        "owner": info.owner,
    }


def started_fields(info: SessionInfo) -> dict[str, object]:
    """What shell_spawn and ssh_spawn report of the new session (:class:`SessionStarted`)."""
    row = info_fields(info)
    return {name: row[name] for name in STARTED_FIELDS}


def session_outcome(info: SessionInfo, verb: str, data: dict[str, object]) -> Outcome:
    """The result of a call that started or acted on a session: the whole session in one line
    of text, and the structured ``data`` the action reports."""
    where = f" on {info.host}" if info.host else ""
    text = f"{verb} {info.session_id} ({info.kind}{where}, {info.cols}x{info.rows}): {info.command} · {info.state}"
    if info.exit_code is not None:
        text += f" · exit {info.exit_code}"
    return Outcome(
        text=text,
        data=data,
        exit_code=info.exit_code,
        audit_extra={"session_id": info.session_id},
    )


def session_targets(info: SessionInfo) -> list[str]:
    """The policy targets of a call on a session: its host, if remote."""
    return [info.host] if info.host else []


def session_line(info: SessionInfo) -> str:
    """One session in the text of ``session_list``."""
    return (
        f"{info.session_id} {info.kind}{'@' + info.host if info.host else ''} {info.state} "
        f"{info.cols}x{info.rows} age {info.age_s:.0f}s idle {info.idle_s:.0f}s "
        f"buffered {info.bytes_buffered}B{owner_note(info.owner)}: {info.command}"
    )


def owner_note(owner: str | None) -> str:
    """`` owner <principal>`` in a line of a list, when the work has an owner (under OAuth)."""
    return f" owner {owner}" if owner is not None else ""
