"""Build the server: the services, the MCP server subclass, every tool registered.

:class:`RelayServer` overrides the three entry points of ``MCPServer`` so that nothing
bypasses the pipeline: a tool call is checked (known tool, input size, no unknown argument,
the schema) before its body runs, and resource reads and prompt fetches run as tier-0
calls. Replies reach the wire through ``relay_shell.tools.adapter``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.server.mcpserver.tools.base import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, GetPromptResult, Icon, InputRequiredResult, ToolAnnotations
from pydantic import AnyUrl, ValidationError

import relay_shell
from relay_shell.config import ConfirmMode, Settings
from relay_shell.errors import ExecFailed, InvalidInput, RelayError
from relay_shell.governance.bounds import check_input_size
from relay_shell.governance.call import Call, CallArguments, Identity, Outcome, Plan, Reply
from relay_shell.guidance import instructions
from relay_shell.services import Services, build_services
from relay_shell.stdio import RefusingReadStream, line_limit
from relay_shell.stdio_pipes import stdio_streams
from relay_shell.tools import register_all
from relay_shell.tools.adapter import protocol_error, raise_for_protocol, tool_result
from relay_shell.tools.base import CURRENT_ARGUMENTS, TASK_INTENT, identity_of
from relay_shell.tools.listing import DeferredArguments, listed_tool
from relay_shell.tools.schemas import compact_tool_schemas
from relay_shell.tools.tasks import TasksExtension
from relay_shell.tools.tasks_legacy import LegacyTasks
from relay_shell.tools.tasks_shared import TASK_TOOLS
from relay_shell.vocabulary import Tier

__all__ = ["RelayServer", "Services", "build_server", "build_services"]

MAX_NAME_IN_AUDIT = 200
FIRST_CALLS = ("shell_exec",)
"""The tools a client calls first: their argument models are built with the server, the other
tools' at their first call or once the server is quiet (:meth:`RelayServer.build_arguments`)."""
WARM_SSH_QUIET_S = 0.1
"""How long the server must have had nothing to do before it loads the SSH layer (and what the
first call needs) ahead of use."""


class RelayServer(MCPServer[Services]):
    """MCPServer whose every request passes through the pipeline (audited, never bypassed)."""

    services: Services

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Refuse what cannot be run (audited), then run the tool body with its arguments noted.

        An unknown tool is a JSON-RPC error (invalid params); an oversized, unknown or
        malformed argument is an ``invalid`` result naming it.
        """
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            shown = name[:MAX_NAME_IN_AUDIT]
            error = InvalidInput("name", f"no tool named {shown!r} (see tools/list)")
            self.services.pipeline.reject(shown, CallArguments.same(arguments), _identity(context), error)
            raise protocol_error(error, message=f"Unknown tool: {shown}", name=shown)
        raw = CallArguments.same(arguments)
        try:
            check_input_size(arguments, self.services.settings.max_input_bytes)
            _check_known(arguments, tool.parameters)
            _check_no_stray_booleans(arguments, tool.parameters)
            validated = tool.fn_metadata.validate_arguments(arguments)
        except InvalidInput as exc:
            return _refused(self.services.pipeline.reject(name, raw, _identity(context), exc))
        except ValidationError as exc:
            error = InvalidInput(*_first_problem(exc))
            return _refused(self.services.pipeline.reject(name, raw, _identity(context), error))
        token = CURRENT_ARGUMENTS.set(CallArguments(raw=arguments, effective=validated))
        if context is None:
            context = Context(mcp_server=self, subscriptions=self._subscriptions)
        try:
            # convert_result=False: the tool already returns the wire result, built as plain data;
            # its structured content is not validated again on every call (the output-schema
            # tests check every tool's results instead).
            result: CallToolResult | InputRequiredResult = await _run_validated(
                tool, arguments, validated, context
            )
            return result
        finally:
            CURRENT_ARGUMENTS.reset(token)

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Register ``fn`` with its wire schemas from the generated listing (``tools/listing.py``);
        a tool the listing lacks, or one with icons, meta or a structured-output choice, the SDK's way."""
        listed = None
        if icons is None and meta is None and structured_output is None:
            listed = listed_tool(fn, name=name, title=title, description=description, annotations=annotations)
        if listed is None or listed.name in self._tool_manager._tools:
            super().add_tool(fn, name, title, description, annotations, icons, meta, structured_output)
            return
        self._tool_manager._tools[listed.name] = listed

    def build_arguments(self, names: Iterable[str] | None = None) -> None:
        """Build the argument models still deferred (``names``: only those tools'; blocking, and
        safe in a worker thread while calls are served)."""
        for tool in self._tool_manager.list_tools():
            if isinstance(tool.fn_metadata, DeferredArguments) and (names is None or tool.name in names):
                tool.fn_metadata.build()

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """Every resource read is a tier-0 call through the pipeline; its URI is a target.

        Raises:
            MCPError: unknown URI (-32602), refused or failed (-32603).
        """
        read = ResourceRead(self, str(uri), context)
        result = await self.services.pipeline.run(
            "resource_read", CallArguments.same({"uri": str(uri)}), _identity(context), read.plan
        )
        raise_for_protocol(result, uri=str(uri))
        return read.contents

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """Every prompt fetch is a tier-0 call through the pipeline.

        Raises:
            MCPError: unknown prompt (-32602), refused or failed (-32603).
        """
        fetch = PromptFetch(self, name, arguments, context)
        result = await self.services.pipeline.run(
            "prompt_get",
            CallArguments.same({"name": name, "arguments": arguments or {}}),
            _identity(context),
            fetch.plan,
        )
        raise_for_protocol(result, name=name)
        assert fetch.fetched is not None
        return fetch.fetched

    async def run_stdio_async(self) -> None:
        """Serve over stdio, from the event loop where stdin and stdout are pipes
        (``relay_shell.stdio_pipes``), with bounded lines (``relay_shell.stdio``); the lifespan
        starts the services and, at stdin EOF or when the client closes stdout, tears them down."""
        limit = line_limit(self.services.settings.max_input_bytes)
        async with stdio_streams(limit) as (read_stream, write_stream):
            await self._lowlevel_server.run(
                RefusingReadStream(read_stream, write_stream),
                write_stream,
                self._lowlevel_server.create_initialization_options(),
            )

    async def _sdk_read(
        self, uri: str, context: Context[Any, Any] | None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        return await super().read_resource(uri, context)

    async def _sdk_prompt(
        self, name: str, arguments: dict[str, Any] | None, context: Context[Any, Any] | None
    ) -> GetPromptResult | InputRequiredResult:
        if self._prompt_manager.get_prompt(name) is None:
            raise InvalidInput("name", f"no prompt named {name!r}")
        return await super().get_prompt(name, arguments, context)


class ResourceRead:
    """One resource read: the plan the pipeline runs and the contents it produced."""

    def __init__(self, server: RelayServer, uri: str, context: Context[Any, Any] | None) -> None:
        self.server = server
        self.uri = uri
        self.context = context
        self.contents: list[ReadResourceContents] = []

    def plan(self) -> Plan[ResourceRead]:
        return Plan(execute_resource_read, self, tier=Tier.READ_ONLY, targets=[self.uri])


async def execute_resource_read(read: ResourceRead, call: Call) -> Outcome:
    """Read through the SDK; an unknown URI is ``invalid`` naming ``uri``, a failed read ``failed``."""
    try:
        produced = await read.server._sdk_read(read.uri, read.context)
    except ResourceNotFoundError as exc:
        raise InvalidInput("uri", f"no resource at {read.uri!r}") from exc
    except ResourceError as exc:
        raise ExecFailed(f"reading {read.uri} failed: {exc}") from exc
    if isinstance(produced, InputRequiredResult):
        raise ExecFailed("this resource needs client input, which relay-shell does not use")
    read.contents.extend(produced)
    text = "".join(
        c.content if isinstance(c.content, str) else f"[{len(c.content)} bytes]" for c in read.contents
    )
    return Outcome(text=text)


class PromptFetch:
    """One prompt fetch: the plan the pipeline runs and the prompt it produced."""

    def __init__(
        self,
        server: RelayServer,
        name: str,
        arguments: dict[str, Any] | None,
        context: Context[Any, Any] | None,
    ) -> None:
        self.server = server
        self.name = name
        self.arguments = arguments
        self.context = context
        self.fetched: GetPromptResult | InputRequiredResult | None = None

    def plan(self) -> Plan[PromptFetch]:
        return Plan(execute_prompt_fetch, self, tier=Tier.READ_ONLY)


async def execute_prompt_fetch(fetch: PromptFetch, call: Call) -> Outcome:
    try:
        prompt = await fetch.server._sdk_prompt(fetch.name, fetch.arguments, fetch.context)
    except RelayError:
        raise
    except ValueError as exc:
        raise InvalidInput("arguments", str(exc)) from exc
    fetch.fetched = prompt
    return Outcome(text=prompt.model_dump_json() if isinstance(prompt, GetPromptResult) else "")


async def _run_validated(
    tool: Tool, arguments: dict[str, Any], validated: dict[str, Any], context: Context[Any, Any]
) -> Any:
    """Run ``tool``'s body with the arguments :meth:`RelayServer.call_tool` already validated.

    The SDK's ``Tool.run`` would validate them a second time; this does what it does after
    that step (the context passed in, failures wrapped as ``ToolError`` or
    ``UnexpectedToolError`` under the tool's name, ``MCPError`` passed through). A tool with
    resolvers goes through ``Tool.run`` itself.
    """
    if tool.resolved_params:
        return await tool.run(arguments, context, convert_result=False)
    direct = {tool.context_kwarg: context} if tool.context_kwarg is not None else None
    try:
        return await tool.fn_metadata.call_fn(tool.fn, tool.is_async, validated, direct)
    except MCPError:
        raise
    except (UnexpectedToolError, UnexpectedResourceError) as exc:
        raise UnexpectedToolError(f"Error executing tool {tool.name}: {exc}") from exc
    except (ToolError, ResourceError) as exc:
        raise ToolError(f"Error executing tool {tool.name}: {exc}") from exc
    except Exception as exc:
        raise UnexpectedToolError(f"Error executing tool {tool.name}") from exc


def _refused(reply: Reply) -> CallToolResult:
    """A call refused before its body ran; a Tasks layer waiting on it learns why."""
    intent = TASK_INTENT.get()
    if intent is not None:
        intent.reply = reply
    return tool_result(reply, None)


def _identity(context: Context[Any, Any] | None) -> Identity:
    return identity_of(context) if context is not None else Identity()


def _check_known(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raises InvalidInput naming the first argument the tool's schema does not declare."""
    known = schema.get("properties", {})
    unknown = sorted(name for name in arguments if name not in known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        more = f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise InvalidInput(unknown[0], f"unknown argument{more}; this tool accepts: {accepted}")


def _check_no_stray_booleans(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raises InvalidInput naming an argument sent as ``true``/``false`` where its schema declares
    a type without ``boolean`` (validation would read ``timeout: true`` as 1 second)."""
    properties = schema.get("properties", {})
    for name, value in arguments.items():
        declared = properties.get(name, {}).get("type") if isinstance(properties.get(name), dict) else None
        types = [declared] if isinstance(declared, str) else declared
        if isinstance(value, bool) and isinstance(types, list) and "boolean" not in types:
            raise InvalidInput(name, f"must be of type {' or '.join(map(str, types))}, not a boolean")


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors()
    names = sorted({".".join(str(part) for part in error["loc"]) or "arguments" for error in errors})
    first = errors[0] if errors else None
    argument = ".".join(str(part) for part in first["loc"]) if first else "arguments"
    problem = first["msg"] if first else "invalid"
    if len(names) > 1:
        problem += f" (also invalid: {', '.join(n for n in names if n != argument)})"
    return argument or "arguments", problem


class PassingMiddleware(Protocol):
    """A middleware that answers the rest of the chain's awaitable itself for a message it has
    nothing to do with (no coroutine of its own), and a coroutine of its own otherwise."""

    def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> Awaitable[HandlerResult]: ...


def as_middleware(middleware: PassingMiddleware) -> ServerMiddleware[Any]:
    """``middleware`` for ``MCPServer(middleware=...)``. The SDK's protocol declares an ``async``
    ``__call__``, but its chain only awaits what each middleware returns (the next link's
    awaitable is as good as a coroutine), so a pass-through costs no await layer."""
    return cast("ServerMiddleware[Any]", middleware)


class WarmWhenQuiet:
    """Middleware: once the client's handshake is answered and the server has been quiet
    (no message in progress) for ``quiet_s``, call ``load`` (once), which starts loading
    something in the background; with ``needed`` false it does nothing at all.

    The handshake's answer (cold start to ``initialize``) never shares the CPU with the
    imports, nor does a call the client sends straight after it; a real client's first
    call, which comes after its model's first turn, finds them loaded. Every message
    passes through unchanged.
    """

    def __init__(
        self, load: Callable[[], object], quiet_s: float = WARM_SSH_QUIET_S, *, needed: bool = True
    ) -> None:
        self._load = load
        self._quiet_s = quiet_s
        self._in_progress = 0
        self._timer: asyncio.TimerHandle | None = None
        self._done = not needed

    @property
    def armed(self) -> bool:
        """A quiet period is being timed (the load starts when it ends without a message)."""
        return self._timer is not None

    def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Awaitable[HandlerResult]:
        """The rest of the chain's awaitable itself once the load started (or was never needed):
        one attribute check, no await layer of its own; before that, the message observed."""
        if self._done:
            return call_next(ctx)
        return self._observed(ctx, call_next)

    async def _observed(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Count the message in progress, stop timing the quiet period, and restart it after."""
        self._in_progress += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            return await call_next(ctx)
        finally:
            self._in_progress -= 1
            if not self._in_progress and not self._done:
                self._timer = asyncio.get_running_loop().call_later(self._quiet_s, self._quiet)

    def _quiet(self) -> None:
        self._timer = None
        if not self._in_progress and not self._done:
            self._done = True
            self._load()


class WarmSshWhenQuiet(WarmWhenQuiet):
    """:class:`WarmWhenQuiet` loading the SSH layer (:meth:`Services.warm_ssh`), only when SSH
    hosts are configured; a real client's first remote call finds asyncssh loaded."""

    def __init__(self, services: Services, quiet_s: float = WARM_SSH_QUIET_S) -> None:
        # no SSH hosts: nothing to load, nothing to time
        super().__init__(services.warm_ssh, quiet_s, needed=bool(services.inventory_size()))


def build_server(
    settings: Settings,
    svc: Services | None = None,
    *,
    task_tools: frozenset[str] = TASK_TOOLS,
    **server_kwargs: Any,
) -> RelayServer:
    """The MCP server with every tool, prompt and resource registered.

    The services start and stop through the server's lifespan (:meth:`Services.lifespan`);
    every input schema says ``additionalProperties: false``. MCP Tasks are served for both
    generations from the job store: the 2026-07-28 extension and the 2025-11-25 middleware,
    for the tools named in ``task_tools`` (the command-running ones).
    Every schema is compacted (``relay_shell.tools.schemas``).
    """
    services = svc or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        async with services.lifespan() as running:
            yield running

    server = RelayServer(
        name="relay-shell",
        version=relay_shell.__version__,
        instructions=instructions(),
        log_level="WARNING",
        lifespan=lifespan,
        extensions=[TasksExtension(services, task_tools)],
        middleware=[
            # without SSH hosts it would only pass every message on: one await layer less
            *([as_middleware(WarmSshWhenQuiet(services))] if services.inventory_size() else []),
            as_middleware(WarmWhenQuiet(services.warm_calls)),  # also builds the deferred argument models
            as_middleware(LegacyTasks(services, task_tools)),
        ],
        **server_kwargs,
    )
    server.services = services
    register_all(server, services)
    server.build_arguments(FIRST_CALLS)
    services.warmers.append(server.build_arguments)
    hidden = () if settings.confirm_tier3 is ConfirmMode.TOKEN else ("confirm_token",)
    compact_tool_schemas(server, hidden)
    for tool in server._tool_manager.list_tools():
        tool.parameters["additionalProperties"] = False
    return server
