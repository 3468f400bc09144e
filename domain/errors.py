"""Named domain errors.

Each maps to one HTTP status and error code in the interfaces' error table, so
the domain never knows about HTTP but every refusal has a stable name.
"""

from __future__ import annotations

from domain.json_types import JsonValue


class DomainError(Exception):
    """A rule of the model refused a command."""

    code = "invalid_request"

    def __init__(self, message: str, details: JsonValue = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidPath(DomainError):
    code = "invalid_path"


class InvalidSchema(DomainError):
    code = "invalid_request"


class InvalidContent(DomainError):
    code = "invalid_request"


class UnknownFolder(DomainError):
    code = "invalid_path"


class DanglingReferences(DomainError):
    code = "dangling_references"


class NothingToPublish(DomainError):
    code = "nothing_to_publish"


class StalePlan(DomainError):
    code = "stale_plan"


class PublishInProgress(DomainError):
    code = "publish_in_progress"


class PullInProgress(DomainError):
    """A pull holds the workspace: main is being mirrored from the service."""

    code = "pull_in_progress"


class IllegalTransition(DomainError):
    """The pipeline's state machine does not allow this command now."""

    code = "conflict"


class LeaseLost(DomainError):
    """Another worker holds (or took over) the pipeline's lease."""

    code = "conflict"


class AlreadyExists(DomainError):
    code = "conflict"


class RefreshFailed(DomainError):
    """A plan's refresh pull did not complete: planning on a stale main would mislead."""

    code = "refresh_failed"


class NotFound(DomainError):
    code = "not_found"


class WriteConflict(DomainError):
    """Other writers kept moving the aggregate on for longer than the retry budget."""

    code = "conflict"


class InvalidConnector(DomainError):
    """A connector config that would record a secret or that no connector could use."""

    code = "invalid_request"
