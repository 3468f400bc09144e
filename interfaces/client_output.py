"""What the client commands print for people: plans with their diffs, statuses, lists.

Scripts use ``--json`` instead (the API's JSON unchanged); nothing here is
meant to be parsed. Values from the server are escaped, never read as rich
markup: a title like ``[draft]`` prints as itself.
"""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from domain.json_types import JsonObject, JsonValue

MARKS = {"create": "[green]+[/green]", "update": "[yellow]~[/yellow]", "delete": "[red]-[/red]"}
"""terraform's marks for an entry's operation."""

UNSUCCESSFUL = ("completed_with_errors", "failed", "cancelled", "stale")
"""The ends of a run that did not publish everything it planned."""

RETRYABLE = ("completed_with_errors", "failed")
"""States whose failed and skipped entries ``POST /pipelines/{id}/retry`` runs again."""

VALUE_WIDTH = 60
PIPE_WIDTH = 160
"""Columns when the output is not a terminal (rich would assume 80 and wrap ids)."""


def console_for(*, stderr: bool = False) -> Console:
    """Where a command prints for people: the terminal's width, or ``PIPE_WIDTH`` in a pipe."""
    console = Console(stderr=stderr)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(stderr=stderr, width=PIPE_WIDTH)


def _list(value: JsonValue) -> list[JsonObject]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def value_text(value: JsonValue) -> str:
    """A field's value as JSON on one line, cut to ``VALUE_WIDTH`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def show_plan(plan: JsonObject, console: Console, *, hint: bool = True) -> None:
    """A plan as a person reads it: phases, the requests they cost, each entry's diff."""
    pipeline_id = plan.get("pipeline_id")
    console.print(
        f"[bold]Plan {escape(str(pipeline_id))}[/bold] for"
        f" {escape(str(plan.get('workspace')))}/{escape(str(plan.get('user')))}"
        f" (main version {plan.get('main_version')}, draft version {plan.get('draft_version')})",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("phase")
    table.add_column("entries", justify="right")
    table.add_column("calls", justify="right")
    for phase in _list(plan.get("phases")):
        table.add_row(str(phase.get("phase")), str(phase.get("entries")), str(phase.get("calls")))
    table.add_section()
    entries = _list(plan.get("entries"))
    table.add_row("total", str(len(entries)), str(plan.get("estimated_calls")))
    console.print(table)
    for entry in entries:
        _show_entry(entry, console)
    counts = ", ".join(
        f"{phase.get('entries')} to {phase.get('phase')}" for phase in _list(plan.get("phases"))
    )
    console.print(
        f"\n[bold]Plan:[/bold] {escape(counts)};"
        f" estimated calls: {plan.get('estimated_calls')} connector requests",
        soft_wrap=True,
    )
    if hint:
        console.print(f"run it with: publishd run {escape(str(pipeline_id))}", soft_wrap=True)


def _show_entry(entry: JsonObject, console: Console) -> None:
    operation = entry.get("operation")
    kind = operation.get("type") if isinstance(operation, dict) else None
    mark = MARKS.get(str(kind), "•")
    record = operation.get("record_id") if isinstance(operation, dict) else None
    target = f"  record {escape(str(record))}" if record else ""
    console.print(
        f"  {mark} {escape(str(entry.get('phase'))):<8} {escape(str(entry.get('path')))}{target}",
        soft_wrap=True,
    )
    for change in _list(entry.get("diff")):
        console.print(
            f"      {escape(str(change.get('field')))}: {escape(value_text(change.get('before')))}"
            f" → {escape(value_text(change.get('after')))}",
            soft_wrap=True,
            highlight=False,
        )
    deferred = entry.get("deferred_fields")
    if isinstance(deferred, list) and deferred:
        names = ", ".join(str(name) for name in deferred)
        console.print(f"      [dim]deferred to backfill: {escape(names)}[/dim]", soft_wrap=True)


def show_nothing_to_publish(body: JsonValue, console: Console) -> None:
    message = body.get("message") if isinstance(body, dict) else None
    console.print(f"No changes: {escape(str(message or 'nothing to publish'))}")


def retry_hint(status: JsonObject) -> str | None:
    """The command that runs a failed pipeline's failed and skipped entries again."""
    if status.get("state") in RETRYABLE:
        return f"publishd retry {status.get('pipeline_id')}"
    return None


def show_status(status: JsonObject, console: Console) -> None:
    """State, counts per phase, errors, and how to retry a pipeline that did not succeed."""
    state = str(status.get("state"))
    style = "green" if state == "completed" else "red" if state in UNSUCCESSFUL else "cyan"
    phase = f", phase {escape(str(status['phase']))}" if status.get("phase") else ""
    console.print(
        f"pipeline {escape(str(status.get('pipeline_id')))}"
        f" ({escape(str(status.get('workspace')))}/{escape(str(status.get('user')))}):"
        f" [bold {style}]{escape(state)}[/bold {style}]{phase}",
        soft_wrap=True,
    )
    times = [
        f"{name} {status[key]}"
        for name, key in (
            ("created", "created_at"),
            ("started", "started_at"),
            ("finished", "finished_at"),
        )
        if status.get(key)
    ]
    if times:
        console.print(f"  {escape(', '.join(times))}", highlight=False, soft_wrap=True)
    counts = status.get("counts")
    if isinstance(counts, dict) and counts:
        table = Table()
        table.add_column("phase")
        for column in ("planned", "published", "failed", "skipped"):
            table.add_column(column, justify="right")
        for name, numbers in counts.items():
            row = numbers if isinstance(numbers, dict) else {}
            table.add_row(
                name, *(str(row.get(c, 0)) for c in ("planned", "published", "failed", "skipped"))
            )
        console.print(table)
    for error in _list(status.get("errors")):
        code = f"{error['code']}: " if error.get("code") else ""
        where = " ".join(str(error[k]) for k in ("phase", "path") if error.get(k))
        console.print(
            f"  [red]error[/red] {escape(where)}: {escape(code + str(error.get('message')))}",
            soft_wrap=True,
            highlight=False,
        )
    hint = retry_hint(status)
    if hint is not None:
        console.print(
            f"retry the failed and skipped entries with: [bold]{escape(hint)}[/bold]",
            soft_wrap=True,
        )


def show_pipelines(pipelines: list[JsonObject], console: Console) -> None:
    """``pipelines list``: newest first, one row each."""
    if not pipelines:
        console.print("no pipelines")
        return
    table = Table()
    for column in ("pipeline", "workspace", "user", "state", "phase", "created"):
        table.add_column(column, no_wrap=column == "pipeline")
    for p in pipelines:
        cells = [str(p.get(key) or "") for key in ("pipeline_id", "workspace", "user", "state")]
        created = str(p.get("created_at") or "")[:19].replace("T", " ")
        table.add_row(*(escape(c) for c in (*cells, str(p.get("phase") or ""), created)))
    console.print(table)
