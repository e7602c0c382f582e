"""JSON schema fragments as Markdown, for ``docs/tools.md`` (``relay_shell.docs_gen``).

The wire schemas are compacted (``relay_shell.tools.schemas``): output schemas carry no
descriptions, so the result tables take them from the tools' output models, and say which
fields every successful result carries (the success branch of the schema's ``anyOf``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel

COMMON_OUTPUT_FIELDS = ("tier", "notes", "error")
_JSON_TYPES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}

type Schema = Mapping[str, object]


def _mapping(value: object) -> Schema:
    return value if isinstance(value, Mapping) else {}


def _branches(schema: Schema) -> list[Schema]:
    """The alternatives of an ``anyOf``/``oneOf``, or the schema itself."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            return [_mapping(option) for option in options]
    return [schema]


def type_text(schema: Schema) -> str:
    """A short type name: ``string``, ``integer or null``, ``array of string``, ``FanoutHostRow``."""
    branches = _branches(schema)
    if len(branches) > 1:
        names = list(dict.fromkeys(type_text(branch) for branch in branches))
        others = [name for name in names if name != "null"]
        if len(others) == 1 and len(names) == 2 and _is_container(others[0]):
            return f"{others[0]}, or null"  # "array of string, or null": the array may be null
        return " or ".join(names)
    reference = schema.get("$ref")
    if isinstance(reference, str):
        return reference.rsplit("/", 1)[-1]
    return _single_type_text(schema)


def _single_type_text(schema: Schema) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(str(name) for name in kind)
    container = {"array": ("items", "array"), "object": ("additionalProperties", "object")}.get(str(kind))
    if container is not None:
        key, word = container
        inner = schema.get(key)
        return f"{word} of {_element(_mapping(inner))}" if isinstance(inner, Mapping) else word
    if isinstance(kind, str):
        return kind
    if "const" in schema:
        return json.dumps(schema["const"])
    values = schema.get("enum")
    if isinstance(values, list) and values:  # an enum whose values say the type
        return " or ".join(dict.fromkeys(_JSON_TYPES.get(type(value), "any") for value in values))
    return "any"


def _is_container(name: str) -> bool:
    return name.startswith(("array of ", "object of "))


def _element(schema: Schema) -> str:
    """The type of an array item or object value, parenthesised when it is compound."""
    name = type_text(schema)
    return f"({name})" if " or " in name or _is_container(name) else name


_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("pattern", "matches `{}`"),
)


def constraints_text(schema: Schema) -> str:
    """Bounds and allowed values of a schema and of its ``anyOf`` branches."""
    parts: list[str] = []
    for branch in [schema, *_branches(schema)]:
        enum = branch.get("enum")
        if isinstance(enum, list):
            parts.append("one of " + ", ".join(f"`{value}`" for value in enum if value is not None))
        for key, template in _CONSTRAINTS:
            if key in branch:
                parts.append(template.format(branch[key]))
    return ", ".join(dict.fromkeys(parts))


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _default_text(schema: Schema, required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema:
        return "optional"
    return f"`{json.dumps(schema['default'], ensure_ascii=False)}`"


def _description(schema: Schema) -> str:
    description = schema.get("description")
    return description if isinstance(description, str) else ""


def length_limits(model: type[BaseModel] | None) -> dict[str, int]:
    """Parameter -> the ``maxLength`` its argument model enforces (not advertised in ``tools/list``)."""
    if model is None:
        return {}
    limits: dict[str, int] = {}
    for name, value in _mapping(model.model_json_schema().get("properties")).items():
        for branch in [_mapping(value), *_branches(_mapping(value))]:
            limit = branch.get("maxLength")
            if isinstance(limit, int):
                limits[str(name)] = limit
    return limits


def parameter_rows(input_schema: Schema, limits: Mapping[str, int] | None = None) -> list[str]:
    """The parameters table of one tool, in declaration order; ``limits`` adds the server's length limits."""
    properties = _mapping(input_schema.get("properties"))
    if not properties:
        return ["No parameters."]
    required = input_schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    rows = ["| Name | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    for name, value in properties.items():
        schema = _mapping(value)
        cells = (
            f"`{name}`",
            type_text(schema),
            _default_text(schema, name in required_names),
            constraints_text({**schema, "maxLength": limits[name]} if limits and name in limits else schema),
            _description(schema),
        )
        rows.append("| " + " | ".join(cell(text) for text in cells) + " |")
    return rows


def field_descriptions(model: type[BaseModel] | None, prefix: str = "") -> dict[str, str]:
    """``field`` (and ``field.sub`` for rows) -> the description its output model gives it."""
    found: dict[str, str] = {}
    if model is None:
        return found
    for name, field in model.model_fields.items():
        if field.description:
            found[prefix + name] = field.description
        for row in _row_models(field.annotation):
            found.update(field_descriptions(row, f"{prefix}{name}."))
    return found


def _row_models(annotation: object) -> list[type[BaseModel]]:
    """The models inside ``list[Row]`` or ``Row | None`` (the rows a result field holds)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    arguments = getattr(annotation, "__args__", ())
    return [model for argument in arguments for model in _row_models(argument)]


def _success_fields(schema: Schema) -> set[str]:
    """The fields a successful result always carries: ``required`` plus the anyOf success branch."""
    names = {str(name) for name in _list(schema.get("required"))}
    for branch in _list(schema.get("anyOf")):
        listed = [str(name) for name in _list(_mapping(branch).get("required"))]
        if listed != ["error"]:
            names.update(listed)
    return names


def _failure_fields(schema: Schema) -> set[str]:
    """The fields the failure branch of the schema's ``anyOf`` names (``error``, described once)."""
    return {
        str(name)
        for branch in _list(schema.get("anyOf"))
        if (listed := _list(_mapping(branch).get("required"))) == ["error"]
        for name in listed
    }


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _rows_schema(schema: Schema) -> Schema:
    """The object schema of a field that holds rows (an array of objects, or an object), else {}."""
    items = _mapping(schema.get("items"))
    for candidate in (items, schema):
        if _mapping(candidate.get("properties")):
            return candidate
    return {}


def _field_list(schema: Schema, descriptions: Mapping[str, str], prefix: str) -> str:
    properties = _mapping(schema.get("properties"))
    always = _success_fields(schema)
    fields = []
    for name, value in properties.items():
        field = _mapping(value)
        details = [type_text(field), constraints_text(field)]
        if name not in always:
            details.append("when it applies")
        text = f"`{name}` ({', '.join(detail for detail in details if detail)})"
        if description := descriptions.get(prefix + name):
            text += f": {description}"
        fields.append(text)
    return "; ".join(fields)


def output_rows(output_schema: Schema | None, descriptions: Mapping[str, str]) -> list[str]:
    """The result's top-level fields (the common ones are described once, at the top), then its rows."""
    if not output_schema:
        return ["No declared output schema."]
    properties = _mapping(output_schema.get("properties"))
    common = all(
        name in properties or name in _failure_fields(output_schema) for name in COMMON_OUTPUT_FIELDS
    )
    always = _success_fields(output_schema)
    rows = ["| Field | Type | In every result | Description |", "|---|---|---|---|"]
    nested: list[str] = []
    for name, value in properties.items():
        if common and name in COMMON_OUTPUT_FIELDS:
            continue
        schema = _mapping(value)
        present = "yes" if name in always else "when it applies"
        description = descriptions.get(name, "")
        rows.append(f"| `{name}` | {cell(type_text(schema))} | {present} | {cell(description)} |")
        if row := _rows_schema(schema):
            nested += ["", f"Each of `{name}`: {_field_list(row, descriptions, name + '.')}."]
    if len(rows) == 2:
        rows = ["No fields of its own."]
    if common:
        rows += [
            "",
            "Plus the common fields " + ", ".join(f"`{name}`" for name in COMMON_OUTPUT_FIELDS) + ".",
        ]
    return rows + nested
