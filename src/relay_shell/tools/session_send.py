"""session_send: keystrokes into a live session, judged against the line its shell will hold.

The line model's state is taken like a compare-and-set (:func:`execute_session_send`), so
concurrent sends to one session are never judged against a line the shell does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from relay_shell.errors import ExecFailed
from relay_shell.governance.call import Call, Identity, Outcome, Plan
from relay_shell.policy.model import CallText
from relay_shell.policy.session import Feed, LineState, after_send, feed
from relay_shell.services import Services
from relay_shell.sessions import SessionRegistry
from relay_shell.sessions.terminal import keys_to_bytes
from relay_shell.tools.base import ConfirmToken, identity_of, run_tool
from relay_shell.tools.jobs import is_job, refuse_input
from relay_shell.tools.models import SessionSent
from relay_shell.tools.owned import owned_session
from relay_shell.tools.session_rows import session_outcome, session_targets
from relay_shell.vocabulary import Tier

SessionId = Annotated[str, Field(max_length=64)]


@dataclass(frozen=True)
class SessionSend:
    """session_send's arguments, and who sends them."""

    session_id: str
    data: str
    enter: bool
    keys: list[str] | None
    caller: Identity


@dataclass(frozen=True)
class Keystrokes:
    """Validated bytes to type into a live session, and the line the shell will hold after them
    (``typed``: the session's line model fed with them, which the classifier read; ``before``:
    the line state it was fed from)."""

    registry: SessionRegistry
    session_id: str
    payload: bytes
    typed: Feed
    ssh: bool
    before: LineState


DELIVERING = "another send to this session was still being typed"
"""Why a send checked while an earlier one is being typed is opaque (the marker's taint)."""


async def execute_session_send(keystrokes: Keystrokes, call: Call) -> Outcome:
    """Type the bytes, then keep the line model's state for the next send (tainted by what ran).

    The line state is taken like a compare-and-set, so that concurrent sends to one session
    can never be judged against a line the shell does not hold: a send is typed only if the
    state it was classified from is still the session's (else nothing is typed and it fails:
    another send was typed meanwhile); while it is being typed the session holds a tainted
    marker, so a send checked meanwhile is opaque; a send cut short (timeout, cancellation,
    the terminal gone) leaves the session tainted, since the shell may hold part of it.

    Raises:
        ExecFailed: another send was typed after this one was checked (nothing was typed).
    """
    registry, session_id = keystrokes.registry, keystrokes.session_id
    if registry.line_state(session_id) is not keystrokes.before:
        raise ExecFailed(
            "another send to this session was typed after this one was checked, so it was judged "
            "against a line the shell no longer holds: nothing was typed; send it again"
        )
    after = after_send(keystrokes.typed, call.analysis, ssh=keystrokes.ssh)
    marker = after.taint(DELIVERING)
    registry.set_line_state(session_id, marker)
    try:
        await registry.send(session_id, keystrokes.payload)
    except BaseException:
        registry.set_line_state(
            session_id, after.taint("a send was cut short: the shell may hold part of it")
        )
        raise
    if registry.line_state(session_id) is marker:
        registry.set_line_state(session_id, after)
    info = registry.info(session_id)
    sent = {"session_id": info.session_id, "bytes_sent": len(keystrokes.payload), "state": info.state}
    return session_outcome(info, "sent to", sent)


def plan_session_send(request: SessionSend, svc: Services) -> Plan[Keystrokes]:
    if is_job(request.session_id):
        raise refuse_input(request.session_id, "typed into")
    info = owned_session(svc.sessions, request.session_id, request.caller, Tier.READ_ONLY)
    keys = request.keys or []
    payload = request.data.encode() + (b"\r" if request.enter else b"") + keys_to_bytes(keys)
    registry = svc.sessions
    before = registry.line_state(request.session_id)
    typed = feed(  # the line the shell will run, assembled across sends (the classifier reads it)
        before,
        payload.decode("utf-8", errors="replace"),
        foreground_is_shell=registry.foreground_is_shell(request.session_id),
    )
    ssh = info.kind == "ssh"
    hidden = registry.echo_enabled(request.session_id) is False  # a password prompt reads it
    shown = "[REDACTED] (typed at a prompt that hides it)" if hidden else f"`{request.data[:300]}`"
    return Plan(
        execute_session_send,
        Keystrokes(registry, request.session_id, payload, typed, ssh, before),
        text="\n".join(p for p in (request.data, " ".join(keys)) if p),
        call=CallText(typed=typed.units, remote=ssh),
        min_tier=Tier.READ_ONLY,
        targets=session_targets(info),
        timeout_s=svc.settings.default_timeout,  # a child that never reads cannot block the call
        confirm_summary=f"type {shown} into session {request.session_id} ({info.command})",
        hidden_arguments=("data",) if hidden else (),
    )


async def session_send(
    ctx: Context,
    session_id: SessionId,
    data: Annotated[str, Field(max_length=1_000_000)] = "",
    enter: bool = True,
    keys: list[str] | None = None,
    confirm_token: ConfirmToken = "",
) -> Annotated[CallToolResult, SessionSent]:
    request = SessionSend(session_id, data, enter, keys, identity_of(ctx))
    return await run_tool(ctx, "session_send", plan_session_send, request)
