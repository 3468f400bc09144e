"""Natural keys: aggregate ids derived with uuid5 from the workspace and names."""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("5b0f7a1e-6f1c-4d3e-9a59-2f6d1f0c7e11")


def workspace_uuid(workspace_id: str) -> UUID:
    return uuid5(NAMESPACE, f"workspace:{workspace_id}")


def draft_uuid(workspace_id: str, user: str) -> UUID:
    return uuid5(NAMESPACE, f"draft:{workspace_id}:{user}")


def idempotency_key(pipeline_id: str, phase: str, path: str) -> str:
    """Deterministic key for one external call: same (pipeline, phase, path), same key."""
    return str(uuid5(NAMESPACE, f"call:{pipeline_id}:{phase}:{path}"))


def part_key(call_key: str, paths: list[str]) -> str:
    """The key of a part of a call (a batch split around the items the service refused).

    Derived from the call's own key and the part's paths, so a resumed run
    that splits the same call the same way sends each part under the key the
    service saw the first time.
    """
    return str(uuid5(NAMESPACE, f"part:{call_key}:" + "\n".join(paths)))
