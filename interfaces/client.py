"""Client commands: plan, run, publish, cancel, retry, status, follow, audit export.

They talk to a running publishd over HTTP, print human output with rich, or
``--json`` for scripts (one JSON document on stdout; streams as NDJSON).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from domain.json_types import JsonObject, JsonValue

TERMINAL_EVENTS = {"PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PipelineStale"}


class ClientError(Exception):
    def __init__(self, status: int, body: JsonValue) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


@dataclass
class Client:
    url: str
    token: str | None
    timeout: float = 660.0

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: JsonValue = None,
    ) -> JsonValue:
        """The answer's JSON body (``None`` when empty); a 4xx or 5xx raises ``ClientError``."""
        with httpx.Client(base_url=self.url, timeout=self.timeout) as http:
            response = http.request(method, path, headers=self._headers(), params=params, json=json)
        body: JsonValue = response.json() if response.content else None
        if response.status_code >= 400:
            raise ClientError(response.status_code, body)
        return body

    def stream(self, path: str, params: dict[str, str] | None = None) -> Iterator[JsonObject]:
        """Events of a stream as NDJSON, until the server closes it."""
        headers = self._headers({"Accept": "application/x-ndjson"})
        with (
            httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0, read=None)) as http,
            http.stream("GET", path, headers=headers, params=params) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise ClientError(response.status_code, response.json())
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)


def show_plan(plan: JsonObject, console: Console) -> None:
    """A plan as a person reads it: each phase's entries and the requests it will make."""
    table = Table(title=f"plan {plan.get('pipeline_id')}", title_justify="left")
    table.add_column("phase")
    table.add_column("entries", justify="right")
    table.add_column("calls", justify="right")
    phases = plan.get("phases")
    for phase in phases if isinstance(phases, list) else []:
        if isinstance(phase, dict):
            table.add_row(
                str(phase.get("phase")), str(phase.get("entries")), str(phase.get("calls"))
            )
    table.add_section()
    entries = plan.get("entries")
    count = len(entries) if isinstance(entries, list) else 0
    table.add_row("total", str(count), str(plan.get("estimated_calls")))
    console.print(table)
    console.print(f"run it with: publishd run {plan.get('pipeline_id')}")


def emit(data: JsonValue, as_json: bool, console: Console) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        console.print_json(json.dumps(data))


def follow(client: Client, pipeline_id: str, as_json: bool, console: Console) -> JsonObject:
    """Follow a pipeline's stream to its end with a progress bar per phase."""
    if as_json:
        for event in client.stream(f"/pipelines/{pipeline_id}/events"):
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        return dict(client.request("GET", f"/pipelines/{pipeline_id}"))
    bars: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    ) as progress:
        for event in client.stream(f"/pipelines/{pipeline_id}/events"):
            kind = event.get("type")
            if kind == "PipelinePlanned":
                for phase in event.get("phases", []):
                    bars[phase["phase"]] = progress.add_task(
                        phase["phase"], total=phase["entries"], note=""
                    )
            elif kind in ("EntryPublished", "EntryFailed", "EntrySkipped"):
                task = bars.get(event.get("phase", ""))
                if task is not None:
                    progress.advance(task)
                    if kind != "EntryPublished":
                        progress.update(task, note=f"[red]{kind[5:].lower()}: {event.get('path')}")
            elif kind == "EntryPlanned" or kind not in TERMINAL_EVENTS:
                continue
            else:
                break
    status = dict(client.request("GET", f"/pipelines/{pipeline_id}"))
    console.print(f"pipeline {pipeline_id}: [bold]{status['state']}[/bold]")
    for error in status.get("errors", []):
        console.print(f"  [red]{error['phase']} {error['path']}: {error['message']}")
    return status
