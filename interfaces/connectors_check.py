"""``publishd connectors check WS``: see a mapping mistake before a publish does.

It tries the workspace's credentials, lists each mapped collection (Webflow)
or table (Airtable) with its fields, and names every schema field the service
lacks and every reference field whose target is not the collection its
schema's target folder is mapped to. The sandbox keeps no field list: for it,
the check reads one page of each folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from application.connector import Connector, ConnectorError
from domain.connector_config import FOLDER_MAPS
from domain.json_types import JsonObject
from domain.schema import FolderSchema
from domain.workspace import Workspace


@dataclass
class Collection:
    """A mapped folder as the service describes it, whatever the service."""

    folder: str
    service_id: str
    name: str | None
    fields: dict[str, str | None] = field(default_factory=dict)
    """Field name -> the collection (table) id a reference field points into, else None."""


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _collections(described: list[Any]) -> list[Collection]:
    """The adapters' own descriptions (``CollectionInfo``, ``TableInfo``) in one shape."""
    out = []
    for info in described:
        if hasattr(info, "collection_id"):  # Webflow
            fields = {f.slug: f.reference_target for f in info.fields}
            out.append(Collection(info.folder, info.collection_id, info.display_name, fields))
        else:  # Airtable
            fields = {f.name: f.links_to for f in info.fields}
            out.append(Collection(info.folder, info.table_id or info.table, info.name, fields))
            if info.table_id is None:
                out[-1].name = None
    return out


def compare(
    collections: list[Collection], schemas: dict[str, FolderSchema], mapping: JsonObject
) -> Report:
    report = Report()
    known = {c.folder: {c.service_id, c.name, mapping.get(c.folder)} for c in collections}
    for c in collections:
        if c.name is None:
            report.problems.append(f"{c.folder}: the service has no {c.service_id!r}")
            continue
        report.lines.append(
            f"{c.folder} -> {c.name} ({c.service_id}): {', '.join(sorted(c.fields))}"
        )
        schema = schemas.get(c.folder)
        if schema is None:
            report.lines.append(f"  {c.folder} has no schema in the workspace")
            continue
        wanted = [f.name for f in schema.fields]
        if schema.filename_from:
            wanted.append(schema.filename_from)
        for name in wanted:
            if name not in c.fields:
                report.problems.append(f"{c.folder}.{name}: no such field in {c.name}")
        for ref in schema.fields:
            target = mapping.get(ref.target)
            actual = c.fields.get(ref.name)
            accepted = known.get(ref.target, {target})
            if ref.name in c.fields and target is not None and actual not in accepted:
                report.problems.append(
                    f"{c.folder}.{ref.name} points into {actual}, but {ref.target} is mapped to"
                    f" {target}"
                )
    for folder in sorted(set(schemas) - {c.folder for c in collections}):
        report.problems.append(
            f"{folder}: the workspace has a schema but the connector maps no collection for it"
        )
    return report


async def check(workspace: Workspace, connector: Connector) -> Report:
    inner = getattr(connector, "inner", connector)
    config = workspace.connector
    schemas = workspace.folder_schemas()
    describe = getattr(inner, "describe", None)
    try:
        if describe is None:
            report = Report()
            for folder in sorted(schemas):
                page = await connector.list_page(folder, 0, 1)
                report.lines.append(
                    f"{folder}: {page.total} records (the sandbox keeps no field list)"
                )
            return report
        mapping = config.get(FOLDER_MAPS.get(str(config.get("type")), ""), {})
        assert isinstance(mapping, dict)
        return compare(_collections(await describe()), schemas, mapping)
    except ConnectorError as exc:
        return Report(problems=[f"the service refused: {exc.message}"])
