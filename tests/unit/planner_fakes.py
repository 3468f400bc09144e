"""In-memory answers to the planner's questions, built the way the projections build theirs.

FileIndex comes from the id in each main file; FileReference from
``extract_references`` over main, so the fake points at what the real
projections would, @-refs and resolved ids alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from domain.json_types import JsonObject
from domain.paths import FilePath, parse_path
from domain.references import RefTarget, extract_references
from domain.schema import FolderSchema, ReferenceField


class InMemoryInputs:
    def __init__(self, main: Mapping[str, JsonObject], schemas: Mapping[str, FolderSchema]) -> None:
        self.main = dict(main)
        self.calls: list[str] = []
        self.ids: dict[FilePath, str] = {}
        self.by_filename: dict[tuple[str, str], set[str]] = {}
        self.by_record_id: dict[tuple[str, str], set[str]] = {}
        for path, content in self.main.items():
            file = parse_path(path)
            schema = schemas.get(file.folder)
            record_id = schema.record_id_of(content) if schema else None
            if record_id is not None:
                self.ids[file] = record_id
            for ref in extract_references(content, schema):
                if ref.target_filename is not None:
                    key = (ref.target_folder, ref.target_filename)
                    self.by_filename.setdefault(key, set()).add(path)
                if ref.target_record_id is not None:
                    key = (ref.target_folder, ref.target_record_id)
                    self.by_record_id.setdefault(key, set()).add(path)

    def main_contents(self, paths: Collection[str]) -> Mapping[str, JsonObject]:
        self.calls.append("main_contents")
        return {path: self.main[path] for path in paths if path in self.main}

    def record_ids(self, files: Collection[FilePath]) -> Mapping[FilePath, str]:
        self.calls.append("record_ids")
        return {file: self.ids[file] for file in files if file in self.ids}

    def inbound_references(self, targets: Collection[RefTarget]) -> Collection[str]:
        self.calls.append("inbound_references")
        sources: set[str] = set()
        for target in targets:
            sources |= self.by_filename.get((target.folder, target.filename), set())
            if target.record_id is not None:
                sources |= self.by_record_id.get((target.folder, target.record_id), set())
        return sources


def library_schemas() -> dict[str, FolderSchema]:
    """Books point at one author and many tags; authors point back at a favourite book."""
    return {
        "books": FolderSchema(
            "books",
            fields=(ReferenceField("author", "authors"), ReferenceField("tags", "tags", True)),
        ),
        "authors": FolderSchema("authors", fields=(ReferenceField("favourite", "books"),)),
        "tags": FolderSchema("tags"),
    }
