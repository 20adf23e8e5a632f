"""One buyer or one user list from an admin API body: the Struct of a configuration entry
(``exchange/model.py``), with every bad field reported instead of the first.

Both raise :class:`~cookiematch.errors.ValidationFailed` with every bad field in
``errors`` as ``[{"field": "redirect_url", "message": "..."}, ...]``.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from cookiematch.config.convert import convert_collecting
from cookiematch.errors import ValidationFailed
from cookiematch.exchange.model import Buyer, UserList


def parse_buyer(data: object, *, nid: str | None = None) -> Buyer:
    """A Buyer from the keys of an ``[[exchange.buyers]]`` entry.

    With ``nid`` (the admin API's path), ``nid`` in ``data`` is optional and must equal it.
    """
    fields, errors = with_identity(data, "nid", nid)
    buyer, more = convert_collecting(fields, Buyer)
    if buyer is not None:
        more += [{"field": key, "message": message} for key, message in buyer.problems()]
    if buyer is None or errors or more:
        raise ValidationFailed("invalid buyer", errors=errors + more)
    return buyer


def parse_user_list(
    data: object, *, list_id: int | None = None, buyers: Container[str] | None = None
) -> UserList:
    """A UserList from the keys of an ``[[exchange.user_lists]]`` entry.

    With ``list_id`` (the admin API's path), ``id`` in ``data`` is optional and must equal it.
    With ``buyers``, the owner must be one of them.
    """
    fields, errors = with_identity(data, "id", list_id)
    user_list, more = convert_collecting(fields, UserList)
    errors += more
    if user_list is not None and buyers is not None and user_list.owner not in buyers:
        errors.append({"field": "owner", "message": f"no buyer has nid {user_list.owner!r}"})
    if user_list is None or errors:
        raise ValidationFailed("invalid user list", errors=errors)
    return user_list


def with_identity(
    data: object, key: str, expected: object
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The body as a dict with the path's identity filled in; an error if they differ."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            "expected a JSON object",
            errors=[{"field": "", "message": f"expected an object, got {_kind(data)}"}],
        )
    fields, errors = dict(data), []
    if expected is not None:
        if key in fields and fields[key] != expected:
            errors.append({"field": key, "message": f"must equal the {key} in the URL path"})
        fields[key] = expected
    return fields, errors


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
