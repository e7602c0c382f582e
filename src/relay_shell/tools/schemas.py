"""What a client reads in ``tools/list``: every tool's schemas, compacted once at registration.

pydantic writes JSON schemas for code generators: a ``title`` on every object and property,
``anyOf [X, {"type": "null"}]`` for every optional value, a ``$defs`` table with ``$ref``s
into it, class docstrings as descriptions. A model pays for every byte of ``tools/list`` in
every session, so :func:`compact_tool_schemas` rewrites each registered tool's schemas,
input and output, into an equivalent smaller form (docs/architecture.md, "What a client
reads"). It is one pass over whatever the tools declare, so a parameter or a result field
added later is compacted the same way:

- no ``title``; every ``$ref`` replaced by its definition and ``$defs`` dropped (a
  recursive definition stays referenced);
- an ``anyOf`` whose branches are plain typed schemas using only keywords of their own type
  becomes one schema with a ``type`` list (``{"type": ["string", "null"]}``; ``number``
  stands for ``number`` and ``integer``), a ``type`` beside an ``enum`` of strings, booleans
  or null goes (the values say it), and so does ``additionalProperties: true`` (the default);
- input: a parameter whose default means "not given" (null or the empty string) is an
  optional parameter without a ``default`` and without a null branch (``{"type":
  "integer"}``): omitting it means the configured default, as the tool's description says.
  The server still accepts an explicit null. String length limits (``maxLength``: a
  command of at most 1,000,000 bytes, a path of 4,096) guard the server, not a choice a
  model makes: they are not advertised, and the tool's argument model keeps enforcing them
  (``RelayServer.call_tool`` validates every call with it; docs/tools.md lists them).
  Ranges a model chooses within (``cols``, ``port``, ``min_tier``) and enums stay.
  Parameters that mean nothing under the server's configuration are left out
  (``confirm_token`` unless ``CONFIRM_TIER3=token``), so a call that sends one is
  ``invalid`` naming it;
- output: no ``default`` and no ``description`` (a result carries values, and
  docs/tools.md describes the fields from the models themselves); ``required``
  lists the fields every result carries, failures included (:data:`ALWAYS_PRESENT`), and
  an ``anyOf`` says that a result carries either every field its model declares without a
  default (a success) or ``error`` (a failure, with whatever partial output it has). The
  ``error`` object is the same in every tool, so it is not declared in each schema: the
  failure branch names it, and the object is described once, in docs/tools.md (from
  :class:`~relay_shell.tools.models.ErrorInfo`) and in the server's instructions. The
  schemas stay open (no ``additionalProperties: false``), so an error result validates
  with every client, including those that validate ``isError`` results
  (docs/adr/0020-tool-listing-budget.md).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from mcp.server.mcpserver import MCPServer

from relay_shell.tools.models import ToolOutput

type Json = dict[str, object]
type Mode = Literal["input", "output"]

ALWAYS_PRESENT = tuple(name for name, field in ToolOutput.model_fields.items() if field.is_required())
"""Fields every result carries, a failure included (``tier``: null when refused before classification)."""

ERROR_FIELD = "error"
"""The result field set on a failure: named by the failure branch of ``anyOf``, described in docs/tools.md."""

_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "array": frozenset({"items", "minItems", "maxItems", "uniqueItems", "prefixItems", "contains"}),
    "object": frozenset(
        {
            "properties",
            "additionalProperties",
            "required",
            "minProperties",
            "maxProperties",
            "patternProperties",
        }
    ),
    "boolean": frozenset(),
    "null": frozenset(),
}
"""Keywords that constrain only instances of one type: branches using only these can share one schema."""

_LEFT_OUT: dict[Mode, frozenset[str]] = {
    "input": frozenset({"maxLength"}),
    "output": frozenset({"default", "description"}),
}
"""Keywords a mode's schemas leave out: server-side length limits (input); defaults and descriptions (output)."""

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def compact_tool_schemas(server: MCPServer, hidden: Collection[str] = ()) -> None:
    """Compact the input and output schema of every tool registered on ``server``, in place.

    Parameters named in ``hidden`` are left out of the input schemas (the server then
    refuses them as unknown arguments).
    """
    for tool in server._tool_manager.list_tools():
        tool.parameters = compact_input(tool.parameters, hidden)
        metadata = tool.fn_metadata
        if metadata.output_schema is not None:
            metadata.output_schema = compact_output(metadata.output_schema)


def compact_input(schema: Json, hidden: Collection[str] = ()) -> Json:
    """An input schema without titles, references, "not given" defaults or ``hidden`` parameters."""
    compacted = _Compactor(schema, "input").top()
    properties = compacted.get("properties")
    if isinstance(properties, dict) and hidden:
        compacted["properties"] = {name: value for name, value in properties.items() if name not in hidden}
        required = compacted.get("required")
        if isinstance(required, list):
            compacted["required"] = [name for name in required if name not in hidden]
    return compacted


def compact_output(schema: Json) -> Json:
    """An output schema, compacted, whose ``required`` and ``anyOf`` say what results carry.

    ``error`` is left out of ``properties`` and named by the failure branch of ``anyOf``
    (a model without success fields has no ``anyOf``: its schema is open, so an error still fits).
    """
    compacted = _Compactor(schema, "output").top()
    properties = compacted.get("properties")
    if isinstance(properties, dict):
        properties.pop(ERROR_FIELD, None)
    declared = compacted.pop("required", [])
    names = [str(name) for name in declared] if isinstance(declared, list) else []
    always = [name for name in names if name in ALWAYS_PRESENT]
    on_success = [name for name in names if name not in ALWAYS_PRESENT]
    if always:
        compacted["required"] = always
    if on_success:
        compacted["anyOf"] = [{"required": on_success}, {"required": [ERROR_FIELD]}]
    return compacted


class _Compactor:
    """One schema document being compacted (its ``$defs`` resolve its ``$ref``s)."""

    def __init__(self, document: Json, mode: Mode) -> None:
        definitions = document.get("$defs")
        self.document = document
        self.definitions: Json = definitions if isinstance(definitions, dict) else {}
        self.mode = mode
        self.kept: set[str] = set()

    def top(self) -> Json:
        """The compacted document; ``$defs`` only for definitions still referenced (recursion)."""
        compacted = self.node({key: value for key, value in self.document.items() if key != "$defs"}, ())
        kept: Json = {}
        while self.kept - set(kept):
            name = sorted(self.kept - set(kept))[0]
            kept[name] = self.node(_json(self.definitions.get(name)), (name,))
        if kept:
            compacted["$defs"] = kept
        return compacted

    def node(self, schema: Json, inlining: tuple[str, ...]) -> Json:
        """``schema`` compacted; ``inlining`` names the definitions being expanded around it."""
        schema, inlining = self._inline(schema, inlining)
        result: Json = {}
        for key, value in schema.items():
            if key == "title" or key in _LEFT_OUT[self.mode]:
                continue
            result[key] = self._child(key, value, inlining)
        result = _merge_any_of(result)
        if _enum_implies_type(result):
            del result["type"]
        if result.get("additionalProperties") is True:
            del result["additionalProperties"]  # JSON Schema's default: any other property
        result = _number_covers_integer(result)
        if self.mode == "input" and "default" in result and result["default"] in (None, ""):
            result = _without_null(result)
            del result["default"]
        return result

    def _child(self, key: str, value: object, inlining: tuple[str, ...]) -> object:
        """A keyword's value, its subschemas compacted (boolean schemas such as ``false`` kept as they are)."""
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            return {name: self._sub(sub, inlining) for name, sub in value.items()}
        if key in _SCHEMA_VALUES:
            return self._sub(value, inlining)
        if key in _SCHEMA_LISTS and isinstance(value, list):
            return [self._sub(sub, inlining) for sub in value]
        return value

    def _sub(self, value: object, inlining: tuple[str, ...]) -> object:
        return self.node(dict(value), inlining) if isinstance(value, dict) else value

    def _inline(self, schema: Json, inlining: tuple[str, ...]) -> tuple[Json, tuple[str, ...]]:
        """A ``$ref`` replaced by its definition (the referring node's own keys win)."""
        reference = schema.get("$ref")
        if not isinstance(reference, str) or not reference.startswith("#/$defs/"):
            return dict(schema), inlining
        name = reference.removeprefix("#/$defs/")
        definition = self.definitions.get(name)
        if not isinstance(definition, dict) or name in inlining:
            self.kept.add(name)  # recursive (or unknown): stays a reference
            return dict(schema), inlining
        expanded = dict(definition)
        if "description" in schema:
            expanded.pop("description", None)  # the class docstring; the field's own description wins
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        return {**expanded, **siblings}, (*inlining, name)


def _json(value: object) -> Json:
    return dict(value) if isinstance(value, dict) else {}


def _merge_any_of(schema: Json) -> Json:
    """``anyOf`` of plain typed branches as one schema with a ``type`` list; otherwise unchanged."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or "type" in schema or not all(isinstance(b, dict) for b in branches):
        return schema
    types: list[str] = []
    keywords: Json = {}
    for branch in branches:
        kind = branch.get("type")
        if not isinstance(kind, str) or kind in types:
            return _nullable_enum(schema, branches)
        own = {key: value for key, value in branch.items() if key != "type"}
        allowed = _TYPE_KEYWORDS.get(kind)
        if allowed is None or not set(own) <= allowed or set(own) & set(keywords):
            return _nullable_enum(schema, branches)
        types.append(kind)
        keywords.update(own)
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    merged["type"] = types[0] if len(types) == 1 else types
    merged.update(keywords)
    return merged


def _number_covers_integer(schema: Json) -> Json:
    """A ``type`` list naming both ``number`` and ``integer`` names ``number`` (every integer is one)."""
    kind = schema.get("type")
    if not isinstance(kind, list) or "number" not in kind or "integer" not in kind:
        return schema
    rest = [name for name in kind if name != "integer"]
    return {**schema, "type": rest[0] if len(rest) == 1 else rest}


def _enum_implies_type(schema: Json) -> bool:
    """Whether ``type`` says nothing the ``enum`` beside it does not (every value of that type)."""
    values, kind = schema.get("enum"), schema.get("type")
    if not isinstance(values, list) or not values:
        return False
    names = {"string": str, "boolean": bool, "null": type(None)}
    kinds = kind if isinstance(kind, list) else [kind]
    return all(
        any(isinstance(name, str) and type(value) is names.get(name) for name in kinds) for value in values
    )


def _nullable_enum(schema: Json, branches: list[Json]) -> Json:
    """``anyOf [{"enum": [...]}, {"type": "null"}]`` as one enum that includes null."""
    if len(branches) != 2 or {"type": "null"} not in branches:
        return schema
    (other,) = [branch for branch in branches if branch != {"type": "null"}]
    values = other.get("enum", [other["const"]] if "const" in other else None)
    if not isinstance(values, list) or set(other) - {"enum", "const", "type"}:
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    kind = other.get("type")
    if isinstance(kind, str):
        merged["type"] = [kind, "null"]
    merged["enum"] = [*values, None]
    return merged


def _without_null(schema: Json) -> Json:
    """A schema whose "not given" default says what null would: the null branch goes."""
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [name for name in kind if name != "null"]
        schema = {**schema, "type": rest[0] if len(rest) == 1 else rest}
    values = schema.get("enum")
    if isinstance(values, list) and None in values:
        schema = {**schema, "enum": [value for value in values if value is not None]}
    return schema
