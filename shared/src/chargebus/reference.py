"""Markdown reference tables generated from the code: topics, payload fields and config keys.

`docs/contract.md` embeds these tables between `<!-- generated: NAME -->` and `<!-- end: NAME -->` markers, so the
page cannot drift from the code: `refresh_generated()` rewrites the blocks and a test checks that the committed page
equals its refreshed form. The same tables are printed by `chargebus topics --markdown`, `chargebus schema --markdown`
and `chargebus config keys`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from chargebus.config import FULL_CONFIG_SERVICE
from chargebus.schema import json_schemas
from chargebus.topics import TOPICS

#: The prefix placeholder the documentation writes topics with.
DOC_PREFIX = "<p>"

Schema = dict[str, Any]


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell: pipes escaped, no line breaks."""
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- topics -----------------------------------------------------------------------------------------------------------


def topics_markdown(prefix: str = DOC_PREFIX) -> str:
    """The topic table (`chargebus.topics.TOPICS`) as Markdown."""
    rows = [
        (
            f"`{prefix}/{_placeholders(spec.pattern)}`",
            spec.direction,
            "yes" if spec.retained else "no",
            spec.payload,
            spec.who,
            f"`{spec.key}`",
        )
        for spec in TOPICS
    ]
    return _table(("topic", "dir", "retained", "payload", "who", "key"), rows)


def _placeholders(pattern: str) -> str:
    return re.sub(r"\{(\w+)\}", r"<\1>", pattern)


# -- JSON Schema → short text -----------------------------------------------------------------------------------------


def _ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


def _without_null(schema: Schema) -> tuple[Schema, bool]:
    """The schema with a `null` alternative taken out, and whether there was one."""
    options = schema.get("anyOf")
    if options is None:
        return schema, False
    rest = [option for option in options if option.get("type") != "null"]
    nullable = len(rest) < len(options)
    inner = rest[0] if len(rest) == 1 else {"anyOf": rest}
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **inner}, nullable


def _type_text(schema: Schema) -> str:
    schema, nullable = _without_null(schema)
    text = _plain_type_text(schema)
    return f"{text} or null" if nullable else text


def _plain_type_text(schema: Schema) -> str:  # noqa: PLR0911 - one return per JSON Schema form
    name = _ref_name(schema)
    if name is not None:
        return name
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(f"`{value}`" if isinstance(value, str) else json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    if kind == "object":
        return _object_text(schema)
    return _FORMATS.get(str(schema.get("format")), str(kind) if kind else "any")


_FORMATS = {"date-time": "time", "date": "date", "password": "secret string", "path": "path"}


def _object_text(schema: Schema) -> str:
    values = list((schema.get("patternProperties") or {}).values())
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        values.append(additional)
    return f"table of {_type_text(values[0])}" if values else "object"


_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
_LENGTHS = (("minLength", "length ≥"), ("maxLength", "length ≤"), ("minItems", "items ≥"), ("maxItems", "items ≤"))


def _constraints(schema: Schema) -> str:
    schema, _nullable = _without_null(schema)
    parts = [f"{sign} {_number(schema[key])}" for key, sign in _BOUNDS if key in schema]
    parts += [f"{label} {schema[key]}" for key, label in _LENGTHS if key in schema]
    if "pattern" in schema:
        parts.append(f"`{schema['pattern']}`")
    items = schema.get("items")
    if isinstance(items, dict) and (inner := _constraints(items)):
        parts.append(f"each {inner}")
    keys = schema.get("patternProperties") or {}
    parts += [f"keys `{pattern}`" for pattern in keys]
    return ", ".join(parts)


def _number(value: Any) -> str:
    return f"{value:_}".replace("_", " ") if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _default_text(schema: Schema, *, required: bool = False) -> str:
    if required:
        return "required"
    if "default" not in schema:  # a default computed when the model is built
        return {"array": "`[]`", "object": "`{}`"}.get(str(schema.get("type")), "computed")
    value = schema["default"]
    if value is None:
        return "not set"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


# -- payloads ---------------------------------------------------------------------------------------------------------


def _field_rows(schema: Schema) -> list[tuple[str, ...]]:
    required = set(schema.get("required", ()))
    rows: list[tuple[str, ...]] = []
    for name, field in schema.get("properties", {}).items():
        _inner, nullable = _without_null(field)
        if name in required:
            presence = "required"
        elif nullable:
            presence = "may be omitted (null)"
        else:
            presence = f"default {_default_text(field)}"
        description = field.get("description", "").replace("<", "&lt;").replace(">", "&gt;")  # not HTML tags
        note = "; ".join(part for part in (_constraints(field), description) if part)
        rows.append((f"`{name}`", _type_text(field), presence, note))
    return rows


def payloads_markdown(names: list[str] | None = None) -> str:
    """A field table per payload model (and per model nested in one), as validated on input."""
    schemas = json_schemas()
    sections: list[str] = []
    nested: dict[str, Schema] = {}
    for name in names or list(schemas):
        schema = schemas[name]
        nested.update(schema.get("$defs", {}))
        sections.append(_payload_section(name, schema))
    sections += [_payload_section(name, nested[name], part_of=True) for name in sorted(set(nested) - set(schemas))]
    return "\n\n".join(sections)


def _payload_section(name: str, schema: Schema, *, part_of: bool = False) -> str:
    title = f"#### {name}" + (" (nested)" if part_of else "")
    return title + "\n\n" + _table(("field", "type", "presence", "constraints"), _field_rows(schema))


# -- config -----------------------------------------------------------------------------------------------------------


def _sections(schema: Schema, defs: dict[str, Schema], path: str, header: str) -> Iterator[tuple[str, Schema]]:
    """(TOML header, section schema) for a section and every section below it, depth first in field order."""
    yield header, schema
    for name, field in schema.get("properties", {}).items():
        child_path = f"{path}.{name}" if path else name
        inner, _nullable = _without_null(field)
        if (ref := _ref_name(inner)) is not None:
            yield from _sections(defs[ref], defs, child_path, f"[{child_path}]")
        elif inner.get("type") == "array" and (ref := _ref_name(inner.get("items", {}))) is not None:
            yield from _sections(defs[ref], defs, child_path, f"[[{child_path}]]")
        elif choices := _tagged_choices(inner):
            for tag, ref in choices:
                yield from _sections(defs[ref], defs, child_path, f'[{child_path}] source = "{tag}"')
        elif inner.get("type") == "object" and inner.get("patternProperties"):
            ((_pattern, value),) = inner["patternProperties"].items()
            if (ref := _ref_name(value)) is not None:
                key = "<evse_id>" if "twc" in _pattern else "<VIN>"
                yield from _sections(defs[ref], defs, child_path, f'[{child_path}."{key}"]')


def _tagged_choices(schema: Schema) -> list[tuple[str, str]]:
    """(tag, model) of a union told apart by a field (`source = "nordpool"`): a table of its own per choice."""
    mapping = (schema.get("discriminator") or {}).get("mapping") or {}
    return [(str(tag), str(ref).rsplit("/", 1)[-1]) for tag, ref in mapping.items()]


def _is_section(field: Schema) -> bool:
    inner, _nullable = _without_null(field)
    if _ref_name(inner) is not None or _tagged_choices(inner):
        return True
    if inner.get("type") == "array" and _ref_name(inner.get("items", {})) is not None:
        return True
    values = inner.get("patternProperties") or {}
    return any(_ref_name(value) is not None for value in values.values())


def config_markdown() -> str:
    """A key table per section of `chargebus.toml`: type, default and limits, as the loader checks them."""
    schema = FULL_CONFIG_SERVICE.model_json_schema()
    defs: dict[str, Schema] = schema.get("$defs", {})
    parts = []
    for header, section in _sections(schema, defs, "", "top level"):
        required = set(section.get("required", ()))
        rows = [
            (f"`{name}`", _type_text(field), _default_text(field, required=name in required), _constraints(field))
            for name, field in section.get("properties", {}).items()
            if not _is_section(field)
        ]
        if rows:
            title = f"#### `{header}`" if header != "top level" else "#### top level"
            parts.append(title + "\n\n" + _table(("key", "type", "default", "limits"), rows))
    return "\n\n".join(parts)


# -- generated blocks in Markdown pages -------------------------------------------------------------------------------

#: Block name → its content, as a page embeds it.
GENERATED: dict[str, Callable[[], str]] = {
    "topics": topics_markdown,
    "payloads": payloads_markdown,
    "config": config_markdown,
}

_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end: \2 -->)", re.DOTALL)


def generated_blocks(text: str) -> list[str]:
    """The names of the generated blocks a page contains, in order."""
    return [match.group(2) for match in _BLOCK.finditer(text)]


def refresh_generated(text: str) -> str:
    """The page with every generated block rewritten from the code; ValueError for an unknown block name."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in GENERATED:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(GENERATED)}")
        return f"{match.group(1)}\n{GENERATED[name]()}\n\n{match.group(4)}"

    return _BLOCK.sub(fill, text)
