"""The tools' wire schemas, generated ahead: registration without pydantic schema generation.

What ``tools/list`` shows of a tool, its input and output schemas, follows from its
signature and its output model (``tools/models.py``) through pydantic's JSON schema
generator and :mod:`relay_shell.tools.schemas`. Deriving them costs a start-up about as
much as every other start-up step together, so ``listing.json`` beside this module holds
them, compacted (no parameter hidden), as :func:`derive` computes them from the tools'
code, with the parameter that receives the request context and where the output model is;
:func:`listed_tool` builds a tool from it. Its argument model (which validates every call)
is built from the signature as before, at the first use (:class:`DeferredArguments`): a
start-up builds only those of the tools a client calls first, and the rest are built in the
background once the server is quiet (``Services.warm_calls``), or by the tool's first call.

The file is regenerated with the documentation (``python -m relay_shell.docs_gen``);
``tests/tools/test_listing.py`` fails when it no longer matches what the code derives. A
tool the file does not list is registered the SDK's way, its schemas derived at start-up
(one whose parameters use resolvers cannot be listed).
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata, func_metadata
from mcp.shared._callable_inspection import is_async_callable
from mcp_types import ToolAnnotations

from relay_shell.tools.schemas import Json, compact_input, compact_output

LISTING_PATH = Path(__file__).with_name("listing.json")
"""The generated file: tool name -> ``{"context", "output_model", "input", "output"}``."""

_ENTRY_KEYS = frozenset({"context", "output_model", "input", "output"})


@dataclass(frozen=True)
class ToolSchemas:
    """One tool's entry: its compacted wire schemas (no parameter hidden), the parameter the
    SDK passes the request context in, and where its output model is (``module:name``)."""

    input: Json
    output: Json | None
    context: str | None
    output_model: str | None


@functools.cache
def _listed() -> Mapping[str, str]:
    """Each listed tool's entry as JSON text, read once per process (parsed per registration,
    so every server gets schemas of its own to adjust)."""
    try:
        document = json.loads(LISTING_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {name: json.dumps(entry) for name, entry in document.items()}


def forget_loaded() -> None:
    """Read the file again at the next registration (after it was regenerated)."""
    _listed.cache_clear()


def listed_schemas(name: str) -> ToolSchemas | None:
    """``name``'s entry in the generated file (a fresh copy), or None when it is not listed
    (or listed in another layout)."""
    entry = _listed().get(name)
    if entry is None:
        return None
    parsed = json.loads(entry)
    if not isinstance(parsed, dict) or not parsed.keys() >= _ENTRY_KEYS:
        return None  # a file of another layout: derived at registration until regenerated
    return ToolSchemas(
        input=parsed["input"],
        output=parsed["output"],
        context=parsed["context"],
        output_model=parsed["output_model"],
    )


class DeferredArguments(FuncMetadata):
    """A listed tool's metadata whose argument model is built from the signature, exactly as
    the SDK builds it, the first time ``arg_model`` is read (validating a call reads it).

    Made by :meth:`deferred`; the output schema and model come from the generated file. Two
    threads reading it at once build it once (a lock); :meth:`build` builds it ahead.
    """

    @classmethod
    def deferred(
        cls, fn: Callable[..., Any], context: str | None, output_schema: Json | None, output_model: object
    ) -> DeferredArguments:
        metadata = cls.model_construct(output_schema=output_schema, output_model=output_model)
        # plain instance attributes, outside the model's fields (not validated, not dumped)
        object.__setattr__(metadata, "_deferred_from", (fn, [context] if context else []))
        return metadata

    def build(self) -> type[ArgModelBase]:
        """The argument model, built now if it was not yet."""
        built: type[ArgModelBase] | None = self.__dict__.get("arg_model")
        if built is None:
            with _BUILDING:
                built = self.__dict__.get("arg_model")
                if built is None:
                    fn, skip = self.__dict__["_deferred_from"]
                    built = func_metadata(fn, skip_names=skip, structured_output=False).arg_model
                    self.__dict__["arg_model"] = built
        return built

    def __getattr__(self, name: str) -> object:
        """``arg_model`` while it is not built yet; every other name as pydantic answers it."""
        if name == "arg_model":
            return self.build()
        # pydantic defines BaseModel.__getattr__ (private attributes) only outside type checking
        answer: Callable[[str], object] = getattr(super(), "__getattr__")  # noqa: B009
        return answer(name)


_BUILDING = threading.Lock()
"""Held while an argument model is built (one at a time, each once)."""


def listed_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    annotations: ToolAnnotations | None = None,
) -> Tool | None:
    """The tool for ``fn`` with its schemas from the generated file, or None when the file
    does not list it (the caller then derives them: ``Tool.from_function``).

    The argument model, which validates every call, is built from the signature exactly as
    the SDK builds it, at its first use (:class:`DeferredArguments`); the output model is the
    one the file names.
    """
    tool_name = name or fn.__name__
    schemas = listed_schemas(tool_name)
    if schemas is None:
        return None
    metadata = DeferredArguments.deferred(fn, schemas.context, schemas.output, _located(schemas.output_model))
    return Tool(
        fn=fn,
        name=tool_name,
        title=title,
        description=description or fn.__doc__ or "",
        parameters=schemas.input,
        fn_metadata=metadata,
        is_async=is_async_callable(fn),
        context_kwarg=schemas.context,
        annotations=annotations,
    )


def _location(model: object) -> str | None:
    if model is None:
        return None
    assert isinstance(model, type), model
    return f"{model.__module__}:{model.__qualname__}"


def _located(location: str | None) -> object:
    if location is None:
        return None
    module, _, qualified = location.partition(":")
    found: object = importlib.import_module(module)
    for part in qualified.split("."):
        found = getattr(found, part)
    return found


def derive(tool: Tool) -> ToolSchemas:
    """What the generated file must hold for ``tool``: what the SDK derives from its code
    (pydantic), the schemas compacted (no parameter hidden).

    Raises:
        ValueError: the tool's parameters use resolvers (its registration stays the SDK's).
    """
    derived = Tool.from_function(tool.fn, name=tool.name, description=tool.description)
    if derived.resolved_params:
        raise ValueError(f"{tool.name}: parameters filled by resolvers cannot be listed ahead")
    output = derived.fn_metadata.output_schema
    return ToolSchemas(
        input=compact_input(derived.parameters),
        output=compact_output(output) if output is not None else None,
        context=derived.context_kwarg,
        output_model=_location(derived.fn_metadata.output_model),
    )


def render(tools: list[Tool]) -> str:
    """The generated file's text for ``tools`` (in name order; keys keep the schemas' order)."""
    document = {}
    for tool in sorted(tools, key=lambda tool: tool.name):
        schemas = derive(tool)
        document[tool.name] = {
            "context": schemas.context,
            "output_model": schemas.output_model,
            "input": schemas.input,
            "output": schemas.output,
        }
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"
