"""How a service record becomes a workspace file, and back."""

from __future__ import annotations

from application.connector import Record
from domain.json_types import JsonObject
from domain.schema import FolderSchema


def record_to_file(record: Record, schema: FolderSchema) -> JsonObject:
    """The record's fields plus its id and its server-computed (read-only) fields."""
    content: JsonObject = {schema.id_path: record.id}
    content.update(record.field_data)
    content.update(record.computed)
    return content
