"""How the projection writers' rows travel to the server: few statements, no per-value work.

Rows travel as ONE JSON document per statement (an array of rows, each an
array of columns), encoded by msgspec in a single call and unpacked on the
server with ``jsonb_array_elements``: a file's content rides inside its row as
the JSON text it was recorded as, so it is neither parsed nor serialised
again, and no per-value Python work (like psycopg's array dumpers) is left.
Small key lists go as one array per column instead (``columns``), for ``unnest``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder()


def columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (the arrays that ``unnest`` turns back into rows)."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for index in range(width):
            cols[index].append(row[index])
    return cols


def rows_json(rows: Iterable[Sequence[Any]]) -> str:
    """Rows (tuples, named or not) -> ``[[col, ...], ...]``, for ``jsonb_array_elements``.

    A file's ``Content`` is written into the document as the JSON text it is.
    """
    return _ENCODER.encode(rows if isinstance(rows, list) else list(rows)).decode()
