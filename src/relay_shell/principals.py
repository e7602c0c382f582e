"""What each principal left running, and ending all of it when that principal's access ends.

A PTY session, a job (or MCP task) and an SSH forward belong to the principal whose call
opened it (``governance/ownership.py``). When a principal's access is withdrawn (a builtin
OAuth grant revoked: ``http/grant_watch.py`` notices), :func:`end_owned` ends what it owns,
as the idle sweeper and shutdown do, outside any call: sessions are killed and closed
(each writes its ``session_end`` record), running jobs are stopped (each writes its
``job_end`` record and stays readable, by an admin, until read or expired), forwards are
closed. One ``principal_end`` record then names the principal, the ``actor`` (what withdrew
the access) and the ids ended.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from relay_shell.errors import InvalidInput, SessionNotFound
from relay_shell.services import Services

PRINCIPAL_END = "principal_end"


@dataclass(frozen=True)
class EndedWork:
    """The ids :func:`end_owned` ended, by kind."""

    sessions: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.jobs or self.forwards)


def live_owners(svc: Services) -> set[str]:
    """The principals that own a live session, a running job or an open forward (never the
    one local principal, ``None``)."""
    owners = {info.owner for info in svc.sessions.list()}
    owners.update(job.meta.owner for job in svc.jobs.jobs() if job.running)
    if len(svc.forwards):
        owners.update(info.owner for info in svc.forwards.get().list())
    return {owner for owner in owners if owner is not None}


async def end_owned(svc: Services, owner: str, actor: str) -> EndedWork:
    """End every session, running job and forward ``owner`` has; audit it when there was any.

    ``actor`` names what withdrew the access (``oauth_revoke:operator``...). Work that ends
    by itself meanwhile is skipped. Never raises for an id that went away.
    """
    ended = EndedWork()
    for info in svc.sessions.list():
        if info.owner == owner:
            with contextlib.suppress(SessionNotFound):
                await svc.sessions.kill(info.session_id, close=True)
                ended.sessions.append(info.session_id)
    for job in svc.jobs.jobs():
        if job.running and job.meta.owner == owner:
            await svc.jobs.stop(job)
            ended.jobs.append(job.job_id)
    if len(svc.forwards):
        forwards = svc.forwards.get()
        for forward in forwards.list():
            if forward.owner == owner:
                with contextlib.suppress(InvalidInput):
                    await forwards.close(forward.forward_id)
                    ended.forwards.append(forward.forward_id)
    if ended:
        fields = {"principal": owner, "actor": actor, "sessions": ended.sessions, "jobs": ended.jobs}
        svc.pipeline.record_event(PRINCIPAL_END, {**fields, "forwards": ended.forwards})
    return ended
