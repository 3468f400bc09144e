"""JSON value types shared by the model."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonValue: TypeAlias = Any
"""Any value that json.loads can produce."""

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object: the content of one file."""
