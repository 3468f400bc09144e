"""JSON value types shared by the model."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonValue: TypeAlias = Any
"""Any value that json.loads can produce."""

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object: the content of one file."""


def json_equal(a: JsonValue, b: JsonValue) -> bool:
    """Whether two JSON values are the same JSON: Python's ``==`` with JSON's types.

    ``==`` takes ``true`` for ``1`` and ``false`` for ``0`` (``bool`` is an
    ``int``), so a field changed from ``1`` to ``true`` would look unchanged and
    never be published. Numbers compare by value (``1`` is ``1.0``, as JSON has
    one number type).
    """
    return a == b and _same_types(a, b)


def _same_types(a: JsonValue, b: JsonValue) -> bool:
    """For values already ``==``: whether no ``bool`` stands where the other has a number."""
    if isinstance(a, dict):
        return all(_same_types(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return all(map(_same_types, a, b))
    return isinstance(a, bool) is isinstance(b, bool)
