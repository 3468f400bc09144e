"""The projections: pure logic from batches of events to coalesced writes on ports."""

from __future__ import annotations

from application.projections.draft_files import DraftFilesProjection
from application.projections.file_index import FileIndexProjection
from application.projections.file_reference import FileReferenceProjection
from application.projections.main_files import MainFilesProjection
from application.projections.pipeline_entries import PipelineEntriesProjection
from application.projections.pipeline_status import PipelineStatusProjection
from application.projections.pull_status import PullStatusProjection

PROJECTION_NAMES: tuple[str, ...] = (
    FileIndexProjection.name,
    FileReferenceProjection.name,
    MainFilesProjection.name,
    DraftFilesProjection.name,
    PipelineStatusProjection.name,
    PipelineEntriesProjection.name,
    PullStatusProjection.name,
)

__all__ = [
    "PROJECTION_NAMES",
    "DraftFilesProjection",
    "FileIndexProjection",
    "FileReferenceProjection",
    "MainFilesProjection",
    "PipelineEntriesProjection",
    "PipelineStatusProjection",
    "PullStatusProjection",
]
