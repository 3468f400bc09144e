"""The planner's lookups (``domain.planner.PlannerInputs``), answered by the projections.

One query per kind of question and batch, so planning a draft of 20,000 files
costs four round trips, not 20,000.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from application.views import Views
from domain.json_types import JsonObject
from domain.paths import FilePath
from domain.planner import RefTarget


class ViewsPlannerInputs:
    def __init__(self, views: Views, workspace_id: str) -> None:
        self._views = views
        self._workspace_id = workspace_id

    def main_contents(self, paths: Collection[str]) -> Mapping[str, JsonObject]:
        return self._views.main_contents(self._workspace_id, list(paths))

    def record_ids(self, files: Collection[FilePath]) -> Mapping[FilePath, str]:
        wanted = list(files)
        found = self._views.record_ids(self._workspace_id, [(f.folder, f.filename) for f in wanted])
        return {f: found[(f.folder, f.filename)] for f in wanted if (f.folder, f.filename) in found}

    def inbound_references(self, targets: Collection[RefTarget]) -> Collection[str]:
        return self._views.inbound_references(
            self._workspace_id,
            [(t.folder, t.filename, t.record_id) for t in targets],
            ["main"],
        )
