"""Glue between the MCP SDK and the pipeline: identity, progress, confirmation, services."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from relay_shell.governance.confirm import ElicitAnswer
from relay_shell.governance.pipeline import Identity, Planner

if TYPE_CHECKING:
    from relay_shell.app import RelayServer, Services

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


def _principal() -> _PrincipalLike | None:
    try:
        from relay_shell.http.scopes import current_principal
    except ImportError:  # the http extra is optional; no principal without it
        return None
    return current_principal()


class _PrincipalLike:
    subject: str | None
    client_id: str | None
    max_tier: int


class _Confirm(BaseModel):
    confirm: bool = Field(description="Run it?")


class ContextConfirmer:
    """Asks the human through MCP elicitation (form mode) on this request's session."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def ask(self, message: str) -> ElicitAnswer:
        try:
            capabilities = self._ctx.client_capabilities
        except ValueError:
            return "unsupported"
        if capabilities is None or capabilities.elicitation is None:
            return "unsupported"
        answer = await self._ctx.elicit(message, schema=_Confirm)
        if answer.action == "accept":
            return "accept" if getattr(answer, "data", None) and answer.data.confirm else "decline"  # type: ignore[union-attr]
        return "decline" if answer.action == "decline" else "cancel"


async def run_tool(ctx: Context, tool: str, args: Mapping[str, object], planner: Planner) -> CallToolResult:
    """Hand one call to the pipeline with this request's identity, progress and confirmer."""

    async def progress(value: float, total: float | None, message: str | None) -> None:
        await ctx.report_progress(value, total, message)

    return await services(ctx).pipeline.run(
        tool, args, identity_of(ctx), planner, progress=progress, confirmer=ContextConfirmer(ctx)
    )
