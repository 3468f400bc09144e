"""What ``publishd plan`` prints for a person: phases, entries and the requests they cost."""

from __future__ import annotations

import io

from rich.console import Console

from interfaces.client import show_plan


def test_a_plan_shows_each_phase_with_its_entries_and_calls_and_the_total() -> None:
    out = io.StringIO()
    plan = {
        "pipeline_id": "p-1",
        "phases": [
            {"phase": "create", "entries": 1050, "calls": 12},
            {"phase": "backfill", "entries": 50, "calls": 1},
        ],
        "estimated_calls": 13,
        "entries": [{}] * 1100,
    }
    show_plan(plan, Console(file=out, width=80, color_system=None))
    lines = [line.split() for line in out.getvalue().splitlines()]
    rows = [line for line in lines if line and line[0] in ("│", "┃")]
    cells = [[c for c in row if c not in ("│", "┃")] for row in rows]
    assert ["create", "1050", "12"] in cells
    assert ["backfill", "50", "1"] in cells
    assert ["total", "1100", "13"] in cells
    assert "publishd run p-1" in out.getvalue()
