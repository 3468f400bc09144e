"""File paths and @-reference strings.

A file path is ``folder/name.json`` where the folder may itself contain ``/``
(``site1/menus/main.json``). Paths are relative; no ``..``, no empty or dot
segments, no control characters (C0, C1), and none of the invisible ones that
make a name look like another: bidi overrides and marks, zero-width characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import InvalidPath

REF_PREFIX = "@/"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
"""Bidi marks, embeddings, overrides and isolates; zero-width spaces, joiners, BOM."""
HIDDEN = re.compile(f"{_CONTROL.pattern}|{_INVISIBLE.pattern}")
"""Any character a name may not hold because it does not show: for whole request paths."""
MAX_PATH_LENGTH = 1024


@dataclass(frozen=True, order=True)
class FilePath:
    folder: str
    filename: str

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.filename}"

    @property
    def ref(self) -> str:
        """The @-reference string that points at this file."""
        return f"{REF_PREFIX}{self.path}"

    def __str__(self) -> str:
        return self.path


def _check_segments(value: str, what: str) -> list[str]:
    if not value:
        raise InvalidPath(f"{what} is empty")
    if len(value) > MAX_PATH_LENGTH:
        raise InvalidPath(f"{what} is longer than {MAX_PATH_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidPath(f"{what} {value!r} contains a control character")
    if _INVISIBLE.search(value):
        raise InvalidPath(f"{what} {value!r} contains an invisible (bidi or zero-width) character")
    if value.startswith("/"):
        raise InvalidPath(f"{what} {value!r} must be relative")
    segments = value.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidPath(f"{what} {value!r} has an empty, '.' or '..' segment")
        if "\\" in segment:
            raise InvalidPath(f"{what} {value!r} contains a backslash")
    return segments


def parse_folder(value: str) -> str:
    """Validate a folder name (``books``, ``site1/menus``)."""
    _check_segments(value, "folder")
    return value


def parse_path(value: str) -> FilePath:
    """Validate ``folder/name.json`` and split it."""
    if not isinstance(value, str):
        raise InvalidPath("path must be a string")
    segments = _check_segments(value, "path")
    if len(segments) < 2:
        raise InvalidPath(f"path {value!r} must be folder/name.json")
    filename = segments[-1]
    if not filename.endswith(".json") or filename == ".json":
        raise InvalidPath(f"path {value!r} must name a .json file")
    return FilePath("/".join(segments[:-1]), filename)


def is_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith(REF_PREFIX)


def parse_ref(value: str) -> FilePath:
    """The file an @-reference string points at."""
    if not value.startswith(REF_PREFIX):
        raise InvalidPath(f"{value!r} is not an @-reference")
    return parse_path(value[len(REF_PREFIX) :])


def try_parse_ref(value: object) -> FilePath | None:
    """The target of an @-reference, or None for any other value (or a malformed ref)."""
    if not is_ref(value):
        return None
    assert isinstance(value, str)
    try:
        return parse_ref(value)
    except InvalidPath:
        return None
