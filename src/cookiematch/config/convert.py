"""Raw values (TOML or JSON) into configuration Structs, with errors that name their key."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from msgspec import inspect

from cookiematch.exchange import codec
from cookiematch.formats import PATTERN_MESSAGES

T = TypeVar("T")
S = TypeVar("S", bound=msgspec.Struct)

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"^Object (?P<kind>contains unknown|missing required) field `(?P<name>[^`]+)`$")
_PATTERN = re.compile(r"^Expected `str` matching regex (?P<pattern>(['\"]).*\2)$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def dec_hook(tp: type, value: object) -> object:
    """Build the custom value types of the configuration from their raw values: its own
    (``from_config``), and the entities' (compiled templates) as the store reads them."""
    from_config = getattr(tp, "from_config", None)
    if from_config is None:
        return codec.dec_hook(tp, value)
    return from_config(value)


def convert(value: object, tp: type[T]) -> T:
    """``msgspec.convert`` with the configuration's custom types; raises ValidationError."""
    return msgspec.convert(value, tp, dec_hook=dec_hook)


def join_key(prefix: str, path: str) -> str:
    """``("exchange", ".buyers[0]")`` -> ``"exchange.buyers[0]"``."""
    path = path.lstrip(".")
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def describe(error: msgspec.ValidationError, tp: Any, prefix: str = "") -> tuple[str, str]:
    """The key (dotted path with ``[i]`` indexes) and a message for a ValidationError
    raised while converting to ``tp``; ``prefix`` is the key of that value."""
    match = _AT.match(str(error))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], match["path"] or ""
    field = _FIELD.match(message)
    pattern = _PATTERN.match(message)
    if field is not None:
        path = join_key(path, field["name"])
        message = "unknown key" if field["kind"] == "contains unknown" else "missing required key"
    elif pattern is not None:
        message = PATTERN_MESSAGES.get(ast.literal_eval(pattern["pattern"]), message)
    elif message.startswith("Invalid enum value"):
        choices = _choices(tp, path)
        if choices:
            message += f" (expected one of: {', '.join(map(repr, choices))})"
    return join_key(prefix, path), message


def _choices(tp: Any, path: str) -> list[object]:
    """The allowed values of the enum or literal at ``path`` inside ``tp``."""
    node: inspect.Type | None = inspect.type_info(tp)
    for step in _STEP.finditer(path):
        node = _step(node, step[1])
    for member in union_members(node):
        if isinstance(member, inspect.EnumType):
            return [m.value for m in member.cls]
        if isinstance(member, inspect.LiteralType):
            return list(member.values)
    return []


def _step(node: inspect.Type | None, name: str | None) -> inspect.Type | None:
    for member in union_members(node):
        if name is not None and isinstance(member, inspect.StructType):
            return next((f.type for f in member.fields if f.encode_name == name), None)
        if name is None and isinstance(member, inspect.VarTupleType | inspect.ListType):
            return member.item_type
    return None


def union_members(node: inspect.Type | None) -> tuple[inspect.Type, ...]:
    """The members of a union type, or the type itself."""
    if node is None:
        return ()
    return node.types if isinstance(node, inspect.UnionType) else (node,)


def convert_collecting(
    data: Mapping[str, Any], tp: type[S]
) -> tuple[S | None, list[dict[str, str]]]:
    """Convert an object into the Struct ``tp`` reporting every bad field, not only the first.

    Returns ``(struct, [])`` or ``(None, [{"field": ..., "message": ...}, ...])``.
    """
    errors: list[dict[str, str]] = []
    fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
    for name in data:
        if name not in fields:
            errors.append({"field": name, "message": "unknown key"})
    for name, info in fields.items():
        if name not in data:
            if info.required:
                errors.append({"field": name, "message": "missing required key"})
            continue
        try:
            convert(data[name], info.type)
        except msgspec.ValidationError as exc:
            key, message = describe(exc, info.type, name)
            errors.append({"field": key, "message": message})
    if errors:
        return None, errors
    try:
        return convert(dict(data), tp), []
    except msgspec.ValidationError as exc:  # a check spanning fields (none today)
        key, message = describe(exc, tp)
        return None, [{"field": key, "message": message}]
