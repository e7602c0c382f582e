"""Build the server: services, the MCP server subclass, every tool registered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, GetPromptResult, InputRequiredResult, TextContent
from pydantic import AnyUrl, ValidationError

import relay_shell
from relay_shell.config import Settings
from relay_shell.errors import InvalidInput
from relay_shell.governance.audit.wiring import build_sink
from relay_shell.governance.audit.writer import AuditSink
from relay_shell.governance.pipeline import Call, Identity, Outcome, Pipeline, Plan
from relay_shell.guidance import instructions
from relay_shell.metrics import Metrics

log = logging.getLogger("relay_shell")

Closer = Callable[[], Any]


@dataclass
class Services:
    """Everything a tool needs, created once per server."""

    settings: Settings
    audit: AuditSink
    metrics: Metrics
    pipeline: Pipeline
    extras: dict[str, object] = field(default_factory=dict)
    _starters: list[Closer] = field(default_factory=list)
    _closers: list[Closer] = field(default_factory=list)
    _counters: dict[str, Callable[[], int]] = field(default_factory=dict)

    def add_counter(self, name: str, counter: Callable[[], int]) -> None:
        """Expose a live count (sessions, forwards, connections) to server_info and metrics."""
        self._counters[name] = counter

    def add_starter(self, starter: Closer) -> None:
        """Register a background start-up step (sweepers) run when serving begins."""
        self._starters.append(starter)

    async def start(self) -> None:
        for starter in self._starters:
            outcome = starter()
            if hasattr(outcome, "__await__"):
                await outcome

    def add_closer(self, closer: Closer) -> None:
        """Register teardown to run at shutdown (last added runs first)."""
        self._closers.append(closer)

    def counts(self) -> dict[str, int]:
        return {name: counter() for name, counter in self._counters.items()}

    def inventory_size(self) -> int | None:
        counter = self._counters.get("inventory_hosts")
        return counter() if counter else None

    async def aclose(self) -> None:
        """Tear down sessions, forwards and connections; close the audit sink last."""
        while self._closers:
            closer = self._closers.pop()
            try:
                outcome = closer()
                if hasattr(outcome, "__await__"):
                    await outcome
            except Exception:
                log.exception("teardown step failed")
        self.audit.close()


class RelayServer(MCPServer[Any]):
    """MCPServer whose schema-validation failures pass through the pipeline (audited, `invalid`)."""

    services: Services

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            try:
                tool.fn_metadata.validate_arguments(arguments)
            except ValidationError as exc:
                argument, problem = _first_problem(exc)
                return self.services.pipeline.reject_invalid(
                    name, arguments, _identity(context), argument, problem
                )
        return await super().call_tool(name, arguments, context)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """Every resource read is a tier-0 call through the pipeline (classified, audited)."""
        read = super().read_resource
        contents: list[ReadResourceContents] = []

        async def work(call: Call) -> Outcome:
            produced = await read(uri, context)
            if isinstance(produced, InputRequiredResult):
                raise ResourceError("this resource needs client input, which relay-shell does not use")
            contents.extend(produced)
            text = "".join(
                c.content if isinstance(c.content, str) else f"[{len(c.content)} bytes]" for c in contents
            )
            return Outcome(text=text)

        result = await self.services.pipeline.run(
            "resource_read", {"uri": str(uri)}, _identity(context), lambda: Plan(work=work, tier=0)
        )
        if isinstance(result, CallToolResult) and result.is_error:
            raise ResourceError(_first_text(result))
        return contents

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """Every prompt fetch is a tier-0 call through the pipeline (classified, audited)."""
        fetch = super().get_prompt
        fetched: list[GetPromptResult | InputRequiredResult] = []

        async def work(call: Call) -> Outcome:
            if self._prompt_manager.get_prompt(name) is None:
                raise InvalidInput("name", f"no prompt named {name!r}")
            prompt = await fetch(name, arguments, context)
            fetched.append(prompt)
            return Outcome(text=prompt.model_dump_json() if isinstance(prompt, GetPromptResult) else "")

        result = await self.services.pipeline.run(
            "prompt_get",
            {"name": name, "arguments": arguments or {}},
            _identity(context),
            lambda: Plan(work=work, tier=0),
        )
        if isinstance(result, CallToolResult) and result.is_error:
            raise ValueError(_first_text(result))
        return fetched[0]


def _identity(context: Context[Any, Any] | None) -> Identity:
    from relay_shell.tools.base import identity_of

    return identity_of(context) if context is not None else Identity()


def _first_text(result: CallToolResult) -> str:
    block = result.content[0] if result.content else None
    return block.text if isinstance(block, TextContent) else "refused"


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors()
    names = sorted({".".join(str(part) for part in error["loc"]) or "arguments" for error in errors})
    first = errors[0] if errors else None
    argument = ".".join(str(part) for part in first["loc"]) if first else "arguments"
    problem = first["msg"] if first else "invalid"
    if len(names) > 1:
        problem += f" (also invalid: {', '.join(n for n in names if n != argument)})"
    return argument or "arguments", problem


def build_services(settings: Settings) -> Services:
    """Services of one server; raises ConfigError when the audit file is another server's or unsafe."""
    audit = build_sink(settings)
    metrics = Metrics()
    pipeline = Pipeline(settings, audit, metrics)
    svc = Services(settings=settings, audit=audit, metrics=metrics, pipeline=pipeline)
    svc.add_starter(lambda: audit.start_heartbeat(settings.audit_anchor_interval))
    return svc


def build_server(settings: Settings, svc: Services | None = None, **server_kwargs: Any) -> RelayServer:
    """The MCP server with every tool, prompt and resource registered."""
    from relay_shell.tools import register_all

    services = svc or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[None]:
        yield None

    server = RelayServer(
        name="relay-shell",
        version=relay_shell.__version__,
        instructions=instructions(),
        log_level="WARNING",
        lifespan=lifespan,
        **server_kwargs,
    )
    server.services = services
    register_all(server, services)
    services.metrics.bind_gauges(
        sessions=lambda: services.counts().get("sessions", 0),
        forwards=lambda: services.counts().get("forwards", 0),
        connections=lambda: services.counts().get("ssh_connections", 0),
        audit_degraded=lambda: 1.0 if services.audit.degraded else 0.0,
    )
    return server
