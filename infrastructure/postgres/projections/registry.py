"""Every projection on PostgreSQL: its pure logic, its writer, and the tables it owns.

The runner, rebuild and verify know projections only through this table, so a
new projection is one entry here (and its tables' DDL in ``tables``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from application.projections import (
    DraftFilesProjection,
    FileIndexProjection,
    FileReferenceProjection,
    MainFilesProjection,
    PipelineEntriesProjection,
    PipelineStatusProjection,
    PullStatusProjection,
)
from application.projections.ports import Projection
from infrastructure.postgres.projections.context import ProjectionCaches
from infrastructure.postgres.projections.draft_files import PostgresDraftFiles
from infrastructure.postgres.projections.file_index import PostgresFileIndex
from infrastructure.postgres.projections.file_reference import PostgresFileReference
from infrastructure.postgres.projections.main_files import PostgresMainFiles
from infrastructure.postgres.projections.pipeline_entries import PostgresPipelineEntries
from infrastructure.postgres.projections.pipeline_status import PostgresPipelineStatus
from infrastructure.postgres.projections.pull_status import PostgresPullStatus
from infrastructure.postgres.projections.tables import Conn, ProjectionTables

WriterFactory = Callable[[Conn, ProjectionTables, ProjectionCaches], Any]
"""A writer for one batch, on the batch's connection."""


@dataclass(frozen=True)
class RegisteredProjection:
    projection: Projection[Any]
    writer: WriterFactory
    tables: tuple[str, ...]
    """The tables only this projection writes (truncated by a rebuild of it alone)."""


PROJECTIONS: dict[str, RegisteredProjection] = {
    FileIndexProjection.name: RegisteredProjection(
        FileIndexProjection(), lambda c, t, _: PostgresFileIndex(c, t), ("file_index",)
    ),
    FileReferenceProjection.name: RegisteredProjection(
        FileReferenceProjection(),
        PostgresFileReference,
        ("file_reference", "file_reference_schemas"),
    ),
    MainFilesProjection.name: RegisteredProjection(
        MainFilesProjection(), lambda c, t, _: PostgresMainFiles(c, t), ("main_files",)
    ),
    DraftFilesProjection.name: RegisteredProjection(
        DraftFilesProjection(), lambda c, t, _: PostgresDraftFiles(c, t), ("draft_files",)
    ),
    PipelineStatusProjection.name: RegisteredProjection(
        PipelineStatusProjection(),
        lambda c, t, _: PostgresPipelineStatus(c, t),
        ("pipeline_status", "pipeline_errors"),
    ),
    PipelineEntriesProjection.name: RegisteredProjection(
        PipelineEntriesProjection(),
        lambda c, t, _: PostgresPipelineEntries(c, t),
        ("pipeline_entries",),
    ),
    PullStatusProjection.name: RegisteredProjection(
        PullStatusProjection(), lambda c, t, _: PostgresPullStatus(c, t), ("pull_status",)
    ),
}
