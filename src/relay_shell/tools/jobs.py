"""The session tools on jobs (``job-...``): what ``session_recv``, ``session_kill`` and
``session_list`` do when the id names a job (docs/adr/0017-jobs-and-tasks.md).

A job is read like a session (output since the last read, ``until``, ``max_bytes``) and,
once it has ended and everything was read, reports how it ended: ``exit_code``,
``signal``, ``output_bytes`` and ``stream_sha256`` of the whole stream, and the per-host
``results`` of a fan-out. ``session_kill`` ends it. A job takes no input: ``session_send``
and ``session_resize`` on one are ``invalid``. Only the job's owner or an admin may read or
kill it (``governance/ownership.py``).
"""

from __future__ import annotations

from relay_shell.background import JOB_PREFIX, JobEnd
from relay_shell.errors import InvalidInput
from relay_shell.governance.call import Call, Identity, Outcome, Reply
from relay_shell.governance.ownership import may_access, require_owner
from relay_shell.linear_regex import LinearRegex
from relay_shell.sessions.jobs import Job, JobInfo, JobRead, JobStore
from relay_shell.tools.session_rows import owner_note


def is_job(session_id: str) -> bool:
    """Whether ``session_id`` names a job rather than a PTY session."""
    return isinstance(session_id, str) and session_id.startswith(JOB_PREFIX)


def refuse_input(session_id: str, verb: str) -> InvalidInput:
    """The error of ``session_send`` / ``session_resize`` on a job."""
    return InvalidInput(
        "session_id",
        f"{session_id} is a job (a command that outlived its call): it cannot be {verb}; read it with "
        "session_recv, stop it with session_kill",
    )


def owned_job(jobs: JobStore[Reply], job_id: str, call: Call) -> Job[Reply]:
    """The job, if the caller may use it.

    Raises:
        SessionNotFound: unknown or expired job.
        PolicyDenied: the job belongs to another principal (and the caller is no admin).
    """
    job = jobs.get(job_id)
    require_owner(job.meta.owner, call.identity, f"job {job_id}", call.tier)
    return job


async def recv_job(
    jobs: JobStore[Reply],
    job_id: str,
    call: Call,
    *,
    timeout_s: float,
    max_bytes: int,
    until: LinearRegex | None,
    strip: bool,
) -> Outcome:
    """``session_recv`` on a job: output since the last read and, once it ended and was read, its end."""
    owned_job(jobs, job_id, call)
    got = await jobs.recv(job_id, timeout_s=timeout_s, max_bytes=max_bytes, until=until, strip=strip)
    return read_outcome(got)


def read_outcome(got: JobRead) -> Outcome:
    """The result of one read of a job (fields of ``SessionRecvResult``)."""
    data: dict[str, object] = {
        "session_id": got.job_id, "mode": "stream", "output": got.output, "bytes": got.bytes, "matched": got.matched,
        "timed_out": got.timed_out, "ended": got.ended, "exit_code": None, "dropped_bytes": got.dropped_bytes,
        "state": "ended" if got.ended else "running",
    }  # fmt: skip
    body = got.output
    if got.stderr is not None:
        data.update(output="", stdout=got.output, stderr=got.stderr)
        body = got.output + (f"\n--- stderr ---\n{got.stderr}" if got.stderr else "")
    header = f"{got.bytes} bytes · {'ended' if got.ended else 'running'}"
    if got.matched is not None:
        header += " · matched" if got.matched else " · until not matched"
    elif got.timed_out:
        header += " · no output within the timeout"
    if got.dropped_bytes:
        header += f" · {got.dropped_bytes} older bytes dropped (buffer full)"
    end = got.end
    if end is not None:
        data.update(end_fields(end))
        header += f" · {end.outcome}" + (f" · exit {end.exit_code}" if end.exit_code is not None else "")
        if end.message:
            header += f": {end.message}"
    return Outcome(text=f"{header}\n{body}", data=data, exit_code=end.exit_code if end else None)


def end_fields(end: JobEnd) -> dict[str, object]:
    """How a job ended, as the structured fields of a read."""
    fields: dict[str, object] = {
        "outcome": end.outcome, "exit_code": end.exit_code, "signal": end.signal,
        "output_bytes": end.output_bytes, "stream_sha256": end.stream_sha256,
    }  # fmt: skip
    if end.results:
        fields["results"] = [dict(row) for row in end.results]
    return fields


async def kill_job(jobs: JobStore[Reply], job_id: str, call: Call) -> Outcome:
    """``session_kill`` on a job: end a running one (its processes are killed), remove an ended one."""
    was_running = owned_job(jobs, job_id, call).running
    info = jobs.info(await jobs.kill(job_id))
    verb = "stopped" if was_running else "removed"
    return Outcome(text=f"{verb} {job_line(info)}", data=killed_fields(job_fields(info)), exit_code=None)


def killed_fields(row: dict[str, object]) -> dict[str, object]:
    """What ``session_kill`` reports of a session's or a job's row: its state after the kill.

    ``outcome`` (a job's end) only when set: the result carries it as a string or not at all.
    """
    killed = {name: row[name] for name in ("session_id", "state", "exit_code")}
    if row.get("outcome") is not None:
        killed["outcome"] = row["outcome"]
    return killed


def visible_jobs(jobs: JobStore[Reply], identity: Identity) -> list[JobInfo]:
    """The jobs ``session_list`` shows this caller: its own, or every job for an admin."""
    return [jobs.info(job) for job in jobs.jobs() if may_access(job.meta.owner, identity)]


def job_fields(info: JobInfo) -> dict[str, object]:
    """One job as a row of ``session_list`` (the fields of ``SessionRow``)."""
    end = info.end
    return {
        "session_id": info.job_id, "kind": "job", "host": info.host, "command": info.command, "cols": 0,
        "rows": 0, "age_s": info.age_s, "idle_s": 0.0, "bytes_buffered": info.bytes_buffered,
        "bytes_produced": info.bytes_produced, "bytes_dropped": info.bytes_dropped, "state": info.state,
        "exit_code": end.exit_code if end else None, "outcome": end.outcome if end else None,
        "owner": info.owner,
    }  # fmt: skip


def job_line(info: JobInfo) -> str:
    """One job in the text of ``session_list``."""
    where = f"@{info.host}" if info.host else ""
    state = info.state if info.end is None else f"ended ({info.end.outcome}, exit {info.end.exit_code})"
    return (
        f"{info.job_id} job{where} {state} age {info.age_s:.0f}s "
        f"buffered {info.bytes_buffered}B{owner_note(info.owner)}: {info.tool}: {info.command}"
    )
