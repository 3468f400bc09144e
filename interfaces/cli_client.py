"""The client commands of ``publishd``: plan, publish, run, retry, cancel, status, follow,
pipelines list, audit.

They talk to a running publishd over HTTP (``--url``/``PUBLISHD_URL``,
``--token``/``PUBLISHD_TOKEN``; flags win), print for people with rich, or
``--json`` for scripts: the API's JSON unchanged, one document on stdout (streams
as NDJSON), also for an error. An error is one line on stderr, ``error: <the
API's message>``, never a traceback; the exit codes are ``EXIT_CODES`` below.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TextIO
from urllib.parse import quote

from rich.console import Console

from domain.json_types import JsonObject, JsonValue
from interfaces.client import Client, ClientError, emit, follow
from interfaces.client_output import (
    UNSUCCESSFUL,
    console_for,
    show_nothing_to_publish,
    show_pipelines,
    show_plan,
    show_status,
)

DEFAULT_URL = "http://127.0.0.1:8000"
OK, ERROR, CHANGES, UNSUCCESSFUL_END = 0, 1, 2, 3

EXIT_CODES = """\
exit codes:
  0  done; for plan and publish, also when there is nothing to publish
  1  an error: the API refused (its message on stderr), publishd is unreachable,
     a wrong command line, or a publish not confirmed
  2  plan --detailed-exitcode: changes are planned
  3  the pipeline did not publish everything: it ended completed_with_errors,
     failed, cancelled or stale (publish, run and retry with --wait or --follow;
     follow; status)

environment:
  PUBLISHD_URL    publishd's address (default http://127.0.0.1:8000); --url wins
  PUBLISHD_TOKEN  the API token; --token wins
"""


class Refused(Exception):
    """A command that must not go on, before anything is sent: its message is the line."""


# --- the commands ---------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    out = Output(args)
    plan = make_plan(out, args)
    if plan is None:
        return OK
    out.show(plan, lambda: show_plan(plan, out.console))
    return CHANGES if args.detailed_exitcode else OK


def cmd_publish(args: argparse.Namespace) -> int:
    """Plan, show the plan, ask, then run that very plan (``POST /pipelines/{id}/run``)."""
    problem = ask_problem(yes=args.yes, as_json=args.json, stdin_is_terminal=sys.stdin.isatty())
    if problem is not None:
        raise Refused(problem)
    out = Output(args)
    plan = make_plan(out, args)
    if plan is None:
        return OK
    pipeline_id = str(plan["pipeline_id"])
    if not args.json:
        show_plan(plan, out.console, hint=False)
    if not args.yes and not confirm(out.console, sys.stdin):
        out.console.print(
            f"Not run. The plan stays planned; run it later with: publishd run {pipeline_id}",
            markup=False,
            soft_wrap=True,
        )
        return ERROR
    return start_run(out, f"/pipelines/{quote(pipeline_id, safe='')}/run", args)


def cmd_run(args: argparse.Namespace) -> int:
    return start_run(Output(args), f"{_pipeline(args)}/run", args)


def cmd_retry(args: argparse.Namespace) -> int:
    return start_run(Output(args), f"{_pipeline(args)}/retry", args)


def cmd_cancel(args: argparse.Namespace) -> int:
    out = Output(args)
    answer = out.client.request("POST", f"{_pipeline(args)}/cancel")
    out.show(
        answer,
        lambda: out.console.print(
            f"cancel requested for pipeline {args.pipeline_id}", markup=False
        ),
    )
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    out = Output(args)
    status = _object(out.client.request("GET", _pipeline(args)))
    out.show(status, lambda: show_status(status, out.console))
    return end_code(status)


def cmd_follow(args: argparse.Namespace) -> int:
    out = Output(args)
    return end_code(follow(out.client, args.pipeline_id, args.json, out.console))


def cmd_pipelines(args: argparse.Namespace) -> int:
    out = Output(args)
    params = {
        key: str(value)
        for key in ("workspace", "user", "state", "limit", "before")
        if (value := getattr(args, key)) is not None
    }
    found = out.client.request("GET", "/pipelines", params=params)
    pipelines = found.get("pipelines") if isinstance(found, dict) else None
    rows = [p for p in pipelines if isinstance(p, dict)] if isinstance(pipelines, list) else []
    out.show(found, lambda: show_pipelines(rows, out.console))
    return OK


def cmd_audit(args: argparse.Namespace) -> int:
    """``audit export`` over HTTP; ``audit pipeline`` too with ``--url``, else from the database."""
    if args.action == "export":
        client = client_of(args)
        params = {"follow": "false"}
        for event in client.stream(f"/workspaces/{quote(args.workspace, safe='')}/events", params):
            sys.stdout.write(json.dumps(event) + "\n")
        return OK
    if args.url:
        pipeline = pipeline_at_version_over_http(client_of(args), args.pipeline_id, args.version)
    else:
        pipeline = _pipeline_at_version_in_database(args.pipeline_id, args.version)
    print(json.dumps(pipeline, indent=2))
    return OK


# --- the parts ------------------------------------------------------------------------
class Output:
    """A command's client and where it prints: stdout for people, stderr beside ``--json``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.as_json: bool = args.json
        self.client = client_of(args)
        self.console = console_for(stderr=self.as_json)

    def show(self, data: JsonValue, human: Callable[[], None]) -> None:
        if self.as_json:
            emit(data, True, self.console)
        else:
            human()


def client_of(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("PUBLISHD_URL") or DEFAULT_URL
    token = args.token or os.environ.get("PUBLISHD_TOKEN")
    return Client(url, token)


def _draft(args: argparse.Namespace) -> str:
    return f"/workspaces/{quote(args.workspace, safe='')}/drafts/{quote(args.user, safe='')}"


def _pipeline(args: argparse.Namespace) -> str:
    return f"/pipelines/{quote(args.pipeline_id, safe='')}"


def make_plan(out: Output, args: argparse.Namespace) -> JsonObject | None:
    """The draft's plan, or None when there is nothing to publish (not an error: said, exit 0)."""
    try:
        return _object(out.client.request("POST", f"{_draft(args)}/plans"))
    except ClientError as refused:
        body = refused.body
        if refused.status != 422 or not isinstance(body, dict):
            raise
        if body.get("error") != "nothing_to_publish":
            raise
        out.show(body, lambda: show_nothing_to_publish(body, out.console))
        return None


def end_code(status: JsonObject) -> int:
    """3 for a pipeline that ended without publishing everything, else 0."""
    return UNSUCCESSFUL_END if status.get("state") in UNSUCCESSFUL else OK


def ask_problem(*, yes: bool, as_json: bool, stdin_is_terminal: bool) -> str | None:
    """Why ``publish`` may not ask before running, if it may not (then it refuses)."""
    if yes:
        return None
    if as_json:
        return "publish --json cannot ask before running: pass --yes to run the plan"
    if not stdin_is_terminal:
        return "publish asks before running, but stdin is not a terminal: pass --yes to run it"
    return None


def confirm(console: Console, answers: TextIO) -> bool:
    """``Run this plan? [y/N]``: only ``y`` or ``yes`` runs it; anything else, or no answer, not."""
    console.print("\nRun this plan? [y/N] ", end="", markup=False)
    console.file.flush()
    answer = answers.readline()
    if not answer.endswith("\n"):
        console.print()  # (end of input: the next line starts on its own)
    return answer.strip().lower() in ("y", "yes")


def start_run(out: Output, path: str, args: argparse.Namespace) -> int:
    """Start a run (or retry); with ``--wait`` or ``--follow``, until it ends."""
    params = {"wait": "true"} if args.wait and not args.follow else None
    answer = _object(out.client.request("POST", path, params=params))
    pipeline_id = str(answer.get("pipeline_id"))
    if args.follow:
        if args.json:
            emit(answer, True, out.console)
        return end_code(follow(out.client, pipeline_id, args.json, out.console))
    if args.wait:
        out.show(answer, lambda: show_status(answer, out.console))
        return end_code(answer)
    out.show(
        answer,
        lambda: out.console.print(
            f"pipeline {pipeline_id} {answer.get('state')}; follow it with:"
            f" publishd follow {pipeline_id}",
            markup=False,
            soft_wrap=True,
        ),
    )
    return OK


def pipeline_at_version_over_http(
    client: Client, pipeline_id: str, version: int | None
) -> JsonObject:
    """``GET /pipelines/{id}/versions/{n}``; without ``n``, the latest version's.

    The API names no latest version, so it is found by doubling ``n`` until
    the pipeline has no event ``n``, then halving the gap: about 2·log2(events)
    requests. A pipeline always has event 1, so a 404 there means it is absent.
    """
    path = f"/pipelines/{quote(pipeline_id, safe='')}/versions"
    if version is not None:
        return _object(client.request("GET", f"{path}/{version}"))
    found = _object(client.request("GET", f"{path}/1"))
    low, high = 1, 2
    while (at := _version_or_none(client, path, high)) is not None:
        found, low, high = at, high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        at = _version_or_none(client, path, middle)
        if at is None:
            high = middle
        else:
            found, low = at, middle
    return found


def _version_or_none(client: Client, path: str, version: int) -> JsonObject | None:
    try:
        return _object(client.request("GET", f"{path}/{version}"))
    except ClientError as absent:
        if absent.status == 404:
            return None
        raise


def _object(body: JsonValue) -> JsonObject:
    if not isinstance(body, dict):
        raise ClientError(None, body)
    return body


def _pipeline_at_version_in_database(pipeline_id: str, version: int | None) -> JsonObject:
    from application.queries import Queries
    from domain.errors import NotFound
    from infrastructure.settings import Settings
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(Settings())
    try:
        return Queries(runtime.app, runtime.views).pipeline_at_version(pipeline_id, version)
    except NotFound as absent:
        raise Refused(str(absent)) from None
    finally:
        runtime.close()


def run_client_command(
    command: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """A client command with its failures as one line on stderr (and ``--json`` on stdout)."""
    try:
        return command(args)
    except ClientError as failed:
        if getattr(args, "json", False):
            emit(failed.body, True, Console())
        hint = " (pass --token or set PUBLISHD_TOKEN)" if failed.status == 401 else ""
        print(f"error: {failed}{hint}", file=sys.stderr)
        return ERROR
    except Refused as refused:
        if getattr(args, "json", False):
            emit({"error": "refused", "message": str(refused), "details": None}, True, Console())
        print(f"error: {refused}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
