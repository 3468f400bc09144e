"""Audit: a pipeline's state as it was at any past version (replaying its events)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.pipeline import PublishPipeline
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime


def pipeline_at_version(
    settings: Settings, pipeline_id: str, version: int | None
) -> dict[str, Any]:
    runtime = Runtime.build(settings)
    try:
        pipeline: PublishPipeline = runtime.app.repository.get(UUID(pipeline_id), version=version)
        return {
            "pipeline_id": pipeline.pipeline_id,
            "version": pipeline.version,
            "state": pipeline.state,
            "phase": pipeline.phase,
            "counts": pipeline.counts(),
            "lease_owner": pipeline.lease_owner,
            "errors": [
                {"path": e["path"], "phase": e["phase"], "message": e["error"]}
                for e in pipeline.entries.values()
                if e["error"]
            ],
        }
    finally:
        runtime.close()
