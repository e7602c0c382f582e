"""Glue between a tool body and the pipeline: services, identity, arguments, confirmation.

A tool is a module-level ``async def`` whose body builds its typed request and calls
:func:`run_tool` with a module-level planner; the planner validates the request and returns
a :class:`~relay_shell.governance.call.Plan` naming a module-level executor. The pipeline
runs both; :mod:`relay_shell.tools.adapter` maps the reply to the wire.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.context import ServerRequestContext
from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver import Context
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    ToolAnnotations,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from relay_shell.governance.call import Call, CallArguments, Detach, Identity, Outcome, Plan, Reply
from relay_shell.governance.confirm import ElicitAnswer
from relay_shell.services import Services
from relay_shell.tools.adapter import tool_result
from relay_shell.vocabulary import Tier

if TYPE_CHECKING:
    from relay_shell.http.scopes import Principal

log = logging.getLogger("relay_shell.tools")

HINT_DEFAULTS: dict[str, bool] = {
    "read_only_hint": False,
    "destructive_hint": True,
    "idempotent_hint": False,
    "open_world_hint": True,
}
"""What the MCP specification says a client assumes for a hint a tool leaves out."""


def hints(*, read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    """A tool's MCP hints, each sent only where it differs from :data:`HINT_DEFAULTS`.

    Every tool states all four here; the wire carries only what a client could not assume,
    since every tool's annotations are paid for in every ``tools/list``.
    """
    return ToolAnnotations(
        read_only_hint=_unless_default("read_only_hint", read_only),
        destructive_hint=_unless_default("destructive_hint", destructive),
        idempotent_hint=_unless_default("idempotent_hint", idempotent),
        open_world_hint=_unless_default("open_world_hint", open_world),
    )


def _unless_default(name: str, value: bool) -> bool | None:
    return None if value == HINT_DEFAULTS[name] else value


def hint(annotations: ToolAnnotations | None, name: str) -> bool:
    """The value of hint ``name`` (``read_only_hint``...) a client reads from ``annotations``."""
    value = getattr(annotations, name, None) if annotations is not None else None
    return HINT_DEFAULTS[name] if value is None else bool(value)


READ_ONLY = hints(read_only=True, destructive=False, idempotent=True, open_world=False)
READ_ONLY_REMOTE = hints(read_only=True, destructive=False, idempotent=True, open_world=True)
RUNS_COMMANDS = hints(read_only=False, destructive=True, idempotent=False, open_world=False)
ADJUSTS = hints(read_only=False, destructive=False, idempotent=True, open_world=False)
RUNS_REMOTE = hints(read_only=False, destructive=True, idempotent=False, open_world=True)

ConfirmToken = Annotated[str, Field(description="Token from a tier-3 refusal", max_length=200)]
"""The ``confirm_token`` parameter every tool that can be tier 3 takes."""

YieldAfter = Annotated[float | None, Field(ge=0, strict=True)]  # "5" is invalid, not coerced
"""The ``yield_after`` parameter of the command-running tools (docs/adr/0017-jobs-and-tasks.md).

Described once, in shell_exec's description (the others say they yield as shell_exec does).
"""

CURRENT_ARGUMENTS: ContextVar[CallArguments | None] = ContextVar("relay_shell_arguments", default=None)
"""The arguments of the tool call being served, set by ``RelayServer.call_tool``."""

type ToolPlanner[Q, R] = Callable[[Q, Services], Plan[R]]
"""A module-level function that validates a tool's request and describes the call."""


@dataclass
class TaskIntent:
    """Set around one ``tools/call`` by an MCP Tasks layer; :func:`run_tool` leaves the reply here.

    The call may then become a job with a task id (only after admission and confirmation);
    ``at_once`` detaches it as soon as it executes (a 2025-11-25 task-augmented request).
    """

    at_once: bool
    reply: Reply | None = None


TASK_INTENT: ContextVar[TaskIntent | None] = ContextVar("relay_shell_task_intent", default=None)
"""The intent of the ``tools/call`` being served, when a Tasks layer set one."""


def services(ctx: Context) -> Services:
    """The services of the server handling this request (the SDK lifespan's state)."""
    state = ctx.request_context.lifespan_context
    if not isinstance(state, Services):
        raise RuntimeError("relay-shell tools need the server's lifespan (Services) to be running")
    return state


def identity_of(ctx: Context) -> Identity:
    """Request id, client and (on HTTP with OAuth) the authenticated principal."""
    request_id: str | None = None
    client_id: str | None = None
    try:
        request = ctx.request_context  # read once: each read of the Context is a pydantic lookup
        request_id = str(request.request_id)
        params = request.session.client_params
        if params is not None:
            client_id = f"{params.client_info.name}/{params.client_info.version}"
    except (ValueError, AttributeError):
        pass
    return _with_principal(request_id, client_id)


def identity_of_request(ctx: ServerRequestContext[Any, Any]) -> Identity:
    """:func:`identity_of` for a request served by a handler of our own (the task methods)."""
    params = ctx.session.client_params
    client_id = f"{params.client_info.name}/{params.client_info.version}" if params is not None else None
    request_id = None if ctx.request_id is None else str(ctx.request_id)
    return _with_principal(request_id, client_id)


def _with_principal(request_id: str | None, client_id: str | None) -> Identity:
    principal = _principal()
    if principal is None:
        return Identity(request_id=request_id, client_id=client_id)
    return Identity(
        request_id=request_id,
        client_id=principal.client_id or client_id,
        subject=principal.subject,
        max_tier=principal.max_tier,
    )


def _principal() -> Principal | None:
    try:
        from relay_shell.http.scopes import current_principal
    except ImportError:  # the http extra is optional; no principal without it
        return None
    return current_principal()


class _Confirm(BaseModel):
    confirm: bool = Field(description="Run it?")


CONFIRM_KEY = "relay-shell/confirm-tier3"
MULTI_ROUND_VERSION = "2026-07-28"


class ContextConfirmer:
    """Asks the human through MCP elicitation (form mode), in whichever way the session speaks.

    Protocol >= 2026-07-28 has no server-to-client requests mid-call: the question travels in an
    ``InputRequiredResult`` and the client retries the call with the answer. The sealed
    ``request_state`` carries a digest of the exact question, so an answer only counts for the
    question that was shown. Older sessions get a standalone ``elicitation/create`` request.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.pending: InputRequiredResult | None = None
        """After :meth:`ask` answered ``pending``: the result that carries the question."""

    async def ask(self, message: str) -> ElicitAnswer:
        try:
            capabilities = self._ctx.client_capabilities
            version = self._ctx.protocol_version
        except ValueError:
            return "unsupported"
        if capabilities is None or capabilities.elicitation is None:
            return "unsupported"
        if version is not None and is_version_at_least(version, MULTI_ROUND_VERSION):
            return self._ask_multi_round(message)
        answer = await self._ctx.elicit(message, schema=_Confirm)
        if answer.action == "accept":
            return "accept" if answer.data.confirm else "decline"
        return "decline" if answer.action == "decline" else "cancel"

    def _ask_multi_round(self, message: str) -> ElicitAnswer:
        digest = hashlib.sha256(message.encode()).hexdigest()
        response = (self._ctx.input_responses or {}).get(CONFIRM_KEY)
        if response is not None and self._ctx.request_state == digest and isinstance(response, ElicitResult):
            if response.action == "accept":
                confirmed = (response.content or {}).get("confirm") is True
                return "accept" if confirmed else "decline"
            return "decline" if response.action == "decline" else "cancel"
        request = ElicitRequest(
            params=ElicitRequestFormParams(
                message=message, requested_schema=render_elicitation_schema(_Confirm)
            )
        )
        self.pending = InputRequiredResult(input_requests={CONFIRM_KEY: request}, request_state=digest)
        return "pending"


def _arguments_of(request: object) -> CallArguments:
    """The call's arguments as the server received them, else the request's own fields."""
    current = CURRENT_ARGUMENTS.get()
    if current is not None:
        return current
    if dataclasses.is_dataclass(request) and not isinstance(request, type):
        return CallArguments.same(dataclasses.asdict(request))
    return CallArguments.same({})


async def run_tool[Q, R](ctx: Context, tool: str, planner: ToolPlanner[Q, R], request: Q) -> CallToolResult:
    """Hand one call to the pipeline with this request's identity, arguments, progress and confirmer."""
    svc = services(ctx)

    async def progress(value: float, total: float | None, message: str | None) -> None:
        await ctx.report_progress(value, total, message)

    confirmer = ContextConfirmer(ctx)
    intent = TASK_INTENT.get()
    result = await svc.pipeline.run(
        tool,
        _arguments_of(request),
        identity_of(ctx),
        partial(planner, request, svc),
        progress=progress,
        confirmer=confirmer,
        detach=None if intent is None else Detach(task=True, at_once=intent.at_once),
    )
    if intent is not None and isinstance(result, Reply):
        intent.reply = result
    return tool_result(result, confirmer.pending)


@dataclass(frozen=True)
class NoArguments:
    """The request of a tool that takes no arguments."""


# --- listings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing[Row]:
    """A tier-0 listing: ``rows()`` read when the call runs, rendered by two module-level functions.

    The text is ``"<count> <noun>(s)"`` then one ``line(row)`` per row; the data is
    ``{key: [fields(row), ...], "count": <count>}``.
    """

    noun: str
    key: str
    rows: Callable[[], Sequence[Row]]
    line: Callable[[Row], str]
    fields: Callable[[Row], dict[str, object]]


async def execute_listing[Row](listing: Listing[Row], call: Call) -> Outcome:
    """The executor of every list tool."""
    found = listing.rows()
    text = f"{len(found)} {listing.noun}(s)\n" + "\n".join(listing.line(row) for row in found)
    data: dict[str, object] = {listing.key: [listing.fields(row) for row in found], "count": len(found)}
    return Outcome(text=text, data=data)


def listing_plan[Row](listing: Listing[Row]) -> Plan[Listing[Row]]:
    """The tier-0 plan of a list tool."""
    return Plan(execute_listing, listing, tier=Tier.READ_ONLY)
