"""The CLI's HTTP client: requests to a running publishd, streams, and following a run.

Every failure a command can meet on the way — an API error, a server that does
not answer, an answer that is not publishd's — becomes one ``ClientError`` with
a one-line message, so the CLI never shows a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from itertools import chain
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from domain.json_types import JsonObject, JsonValue
from interfaces.client_output import show_status


class ClientError(Exception):
    """A request that did not succeed; ``str()`` is the line the CLI prints.

    ``status`` is the HTTP status, or ``None`` when no answer came; ``body`` is
    the API's error body (``{"error", "message", "details"}``) or, without an
    answer, one of the same shape, so ``--json`` prints a document either way.
    """

    def __init__(self, status: int | None, body: JsonValue) -> None:
        message = body.get("message") if isinstance(body, dict) else None
        text = str(message) if message is not None else f"HTTP {status}: {body}"
        super().__init__(" ".join(text.split()))  # one line, whatever the server sent
        self.status = status
        self.body = body


def unreachable(url: str, problem: httpx.TransportError) -> ClientError:
    """No answer from ``url``: refused, timed out, cut off, or not a URL at all."""
    if isinstance(problem, httpx.UnsupportedProtocol):
        message = f"{url} is not a URL publishd can be reached at (http://HOST:PORT; PUBLISHD_URL)"
    elif isinstance(problem, httpx.ConnectError | httpx.ConnectTimeout):
        message = f"cannot reach publishd at {url} (is it running? PUBLISHD_URL)"
    elif isinstance(problem, httpx.TimeoutException):
        message = f"publishd at {url} did not answer in time"
    else:
        message = f"lost the connection to publishd at {url} ({type(problem).__name__})"
    return ClientError(None, {"error": "unreachable", "message": message, "details": None})


def _body(response: httpx.Response, url: str) -> JsonValue:
    """The answer's JSON, or an error body naming what came instead of publishd's JSON."""
    if not response.content:
        return None
    try:
        body: JsonValue = response.json()
    except ValueError:
        message = f"{url} answered {response.status_code} without JSON: is it publishd?"
        raise ClientError(
            response.status_code, {"error": "not_publishd", "message": message, "details": None}
        ) from None
    return body


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
        """The answer's JSON body (``None`` when empty); a failure raises ``ClientError``."""
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout) as http:
                response = http.request(
                    method, path, headers=self._headers(), params=params, json=json
                )
        except (httpx.TransportError, httpx.InvalidURL) as problem:
            raise unreachable(self.url, _transport(problem)) from None
        body = _body(response, self.url)
        if response.status_code >= 400:
            raise ClientError(response.status_code, body)
        return body

    def stream(
        self, path: str, params: dict[str, str] | None = None
    ) -> Generator[JsonObject, None, None]:
        """Events of a stream as NDJSON, until the server closes it."""
        headers = self._headers({"Accept": "application/x-ndjson"})
        try:
            with (
                httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0, read=None)) as http,
                http.stream("GET", path, headers=headers, params=params) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(response.status_code, _body(response, self.url))
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.TransportError, httpx.InvalidURL) as problem:
            raise unreachable(self.url, _transport(problem)) from None


def _transport(problem: httpx.TransportError | httpx.InvalidURL) -> httpx.TransportError:
    """An invalid URL is as unreachable as a refused connection."""
    if isinstance(problem, httpx.InvalidURL):
        return httpx.UnsupportedProtocol(str(problem))
    return problem


def emit(data: JsonValue, as_json: bool, console: Console) -> None:
    """One JSON document: on stdout for scripts, pretty for people."""
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
    else:
        console.print_json(json.dumps(data))


def follow(client: Client, pipeline_id: str, as_json: bool, console: Console) -> JsonObject:
    """Follow a pipeline's stream to its end (a progress bar per phase); its final status."""
    if as_json:
        for event in client.stream(f"/pipelines/{quote(pipeline_id, safe='')}/events"):
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        return _status(client, pipeline_id)
    events = client.stream(f"/pipelines/{quote(pipeline_id, safe='')}/events")
    first = next(events, None)  # (a refusal or no server: said before any bar is drawn)
    bars: dict[str, TaskID] = {}
    published: dict[str, int] = {}
    with (
        closing(events),
        Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}", markup=False),
            console=console,
        ) as progress,
    ):
        # Until the server ends the stream: a terminal event in the replay may be
        # followed by a retry's events (RetryRequested), so it ends nothing here.
        for event in chain([first] if first is not None else [], events):
            kind = event.get("type")
            phase = str(event.get("phase", ""))
            if kind == "PipelinePlanned":
                for planned in event.get("phases", []):
                    bars[planned["phase"]] = progress.add_task(
                        planned["phase"], total=planned["entries"], note=""
                    )
            elif kind in ("EntryPublished", "EntryFailed", "EntrySkipped") and phase in bars:
                progress.advance(bars[phase])
                if kind == "EntryPublished":
                    published[phase] = published.get(phase, 0) + 1
                else:
                    progress.update(bars[phase], note=f"{kind[5:].lower()}: {event.get('path')}")
            elif kind == "RetryRequested":  # the failed and skipped entries run again
                for name, task in bars.items():
                    progress.update(task, completed=published.get(name, 0), note="retry")
    status = _status(client, pipeline_id)
    show_status(status, console)
    return status


def _status(client: Client, pipeline_id: str) -> JsonObject:
    status = client.request("GET", f"/pipelines/{quote(pipeline_id, safe='')}")
    return dict(status) if isinstance(status, dict) else {}
