"""``publishd connectors check WS``: see a mapping mistake before a publish does.

It tries the workspace's credentials, lists each mapped collection (Webflow)
or table (Airtable) with its fields (``Connector.describe``), and names every
schema field the service lacks and every reference field whose target is not
the collection its schema's target folder is mapped to. The sandbox keeps no
field list: for it, the check reads one page of each folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from application.connector import CollectionDescription, Connector, ConnectorError
from domain.schema import FolderSchema
from domain.workspace import Workspace


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def compare(collections: list[CollectionDescription], schemas: dict[str, FolderSchema]) -> Report:
    """The collections against the workspace's folder schemas."""
    report = Report()
    names = {
        c.folder: {n for n in (c.mapped_to, c.service_id, c.name) if n is not None}
        for c in collections
    }
    for c in collections:
        if c.service_id is None:
            report.problems.append(f"{c.folder}: the service has no {c.mapped_to!r}")
            continue
        fields = {f.name: f for f in c.fields}
        report.lines.append(f"{c.folder} -> {c.name} ({c.service_id}): {', '.join(sorted(fields))}")
        schema = schemas.get(c.folder)
        if schema is None:
            report.lines.append(f"  {c.folder} has no schema in the workspace")
            continue
        wanted = [ref.name for ref in schema.fields]
        if schema.filename_from:
            wanted.append(schema.filename_from)
        for name in wanted:
            if name not in fields:
                report.problems.append(f"{c.folder}.{name}: no such field in {c.name}")
        for ref in schema.fields:
            found = fields.get(ref.name)
            target = names.get(ref.target)
            if found is not None and target is not None and found.target not in target:
                report.problems.append(
                    f"{c.folder}.{ref.name} points into {found.target}, but {ref.target} is"
                    f" mapped to {sorted(target)[0]}"
                )
    for folder in sorted(set(schemas) - set(names)):
        report.problems.append(f"{folder}: has a schema, but the connector maps no collection")
    return report


async def check(workspace: Workspace, connector: Connector) -> Report:
    schemas = workspace.folder_schemas()
    try:
        described = await connector.describe()
        if described is not None:
            return compare(described, schemas)
        report = Report()
        for folder in sorted(schemas):
            page = await connector.list_page(folder, 0, 1)
            report.lines.append(f"{folder}: {page.total} records (the service keeps no field list)")
        return report
    except ConnectorError as exc:
        return Report(problems=[f"the service refused: {exc.message}"])
