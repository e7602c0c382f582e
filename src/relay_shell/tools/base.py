"""Glue between the MCP SDK and the pipeline: identity, progress, confirmation, services."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, cast

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

from relay_shell.governance.confirm import ElicitAnswer
from relay_shell.governance.pipeline import Call, Identity, Outcome, Plan, Planner

if TYPE_CHECKING:
    from relay_shell.app import RelayServer, Services
    from relay_shell.http.scopes import Principal

log = logging.getLogger("relay_shell.tools")

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
READ_ONLY_REMOTE = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
RUNS_COMMANDS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
ADJUSTS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
RUNS_REMOTE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)

ConfirmToken = Annotated[
    str, Field(description="Only for tier-3 calls under CONFIRM_TIER3=token", max_length=200)
]
"""The ``confirm_token`` parameter every tool that can be tier 3 takes."""


def listing_plan[Row](
    noun: str,
    key: str,
    rows: Callable[[], Sequence[Row]],
    line: Callable[[Row], str],
    fields: Callable[[Row], dict[str, object]],
) -> Plan:
    """The tier-0 plan of a list tool: when it runs, ``rows()`` as text and as structured fields.

    The text is ``"<count> <noun>(s)"`` then one ``line(row)`` per row; the data is
    ``{key: [fields(row), ...], "count": <count>}``.
    """

    async def work(call: Call) -> Outcome:
        found = rows()
        text = f"{len(found)} {noun}(s)\n" + "\n".join(line(row) for row in found)
        return Outcome(text=text, data={key: [fields(row) for row in found], "count": len(found)})

    return Plan(work=work, tier=0)


def services(ctx: Context) -> Services:
    """The services of the server handling this request."""
    return cast("RelayServer", ctx.mcp_server).services


def identity_of(ctx: Context) -> Identity:
    """Request id, client and (on HTTP with OAuth) the authenticated principal."""
    request_id: str | None = None
    client_id: str | None = None
    subject: str | None = None
    max_tier: int | None = None
    try:
        request_id = ctx.request_id
        params = ctx.session.client_params
        if params is not None:
            client_id = f"{params.client_info.name}/{params.client_info.version}"
    except (ValueError, AttributeError):
        pass
    principal = _principal()
    if principal is not None:
        subject, max_tier = principal.subject, principal.max_tier
        client_id = principal.client_id or client_id
    return Identity(request_id=request_id, client_id=client_id, subject=subject, max_tier=max_tier)


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
        self._pending: InputRequiredResult | None = None

    def pending_result(self) -> object:
        return self._pending

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
        self._pending = InputRequiredResult(input_requests={CONFIRM_KEY: request}, request_state=digest)
        return "pending"


async def run_tool(ctx: Context, tool: str, args: Mapping[str, object], planner: Planner) -> CallToolResult:
    """Hand one call to the pipeline with this request's identity, progress and confirmer."""

    async def progress(value: float, total: float | None, message: str | None) -> None:
        await ctx.report_progress(value, total, message)

    result = await services(ctx).pipeline.run(
        tool, args, identity_of(ctx), planner, progress=progress, confirmer=ContextConfirmer(ctx)
    )
    # An InputRequiredResult (a tier-3 question in the multi-round flow) passes through the SDK
    # unchanged; tools declare CallToolResult because the SDK refuses a union return annotation.
    return cast(CallToolResult, result)
