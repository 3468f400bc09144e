"""What a pull is asked to mirror, checked and resolved before anything is recorded.

A pull names whole folders, or records: by ``(folder, record_id)`` or by the
paths of main's files, which FileIndex turns into record ids here, so the
recorded scope always names records (a file may be renamed later; its record
is what the service knows).
"""

from __future__ import annotations

from collections.abc import Sequence

from application.views import Views
from domain.errors import DomainError, InvalidPath, UnknownFolder
from domain.json_types import JsonObject, JsonValue
from domain.paths import parse_folder, parse_path
from domain.workspace import Workspace

MAX_RECORD_ID_LENGTH = 512


def pull_scope(
    workspace: Workspace,
    views: Views,
    *,
    folders: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    records: Sequence[tuple[str, str]] | None = None,
) -> tuple[list[str], JsonObject]:
    """``(folders, scope)`` of the ``PullStarted`` to record; no argument: every folder."""
    named = [given for given in (folders, paths, records) if given is not None]
    if len(named) > 1:
        raise DomainError("a pull names one of folders, paths or records")
    if paths is not None:
        return _records_scope(workspace, _resolve_paths(workspace, views, paths))
    if records is not None:
        return _records_scope(workspace, list(records))
    chosen = list(dict.fromkeys(folders or sorted(workspace.schemas)))
    for folder in chosen:
        _check_folder(workspace, folder)
    return chosen, {"folders": list(chosen)}


def _check_folder(workspace: Workspace, folder: str) -> None:
    parse_folder(folder)
    if folder not in workspace.schemas:
        raise UnknownFolder(
            f"folder {folder!r} has no schema in workspace {workspace.workspace_id}"
        )


def _resolve_paths(
    workspace: Workspace, views: Views, paths: Sequence[str]
) -> list[tuple[str, str]]:
    files = [parse_path(workspace.check_path(path)) for path in paths]
    known = views.record_ids(workspace.workspace_id, [(f.folder, f.filename) for f in files])
    missing: list[JsonValue] = [f.path for f in files if (f.folder, f.filename) not in known]
    if missing:
        raise InvalidPath(f"{len(missing)} path(s) are not files of main", {"paths": missing})
    return [(f.folder, known[(f.folder, f.filename)]) for f in files]


def _records_scope(
    workspace: Workspace, records: list[tuple[str, str]]
) -> tuple[list[str], JsonObject]:
    if not records:
        raise DomainError("a targeted pull names at least one record")
    for folder, record_id in records:
        _check_folder(workspace, folder)
        if not record_id or len(record_id) > MAX_RECORD_ID_LENGTH:
            raise DomainError(f"record id {record_id[:40]!r} is empty or too long")
    unique = list(dict.fromkeys(records))
    scope: list[JsonValue] = [{"folder": f, "record_id": r} for f, r in unique]
    return sorted({folder for folder, _ in unique}), {"records": scope}


__all__ = ["pull_scope"]
