"""The command line of the client commands (``interfaces.cli_client``): every option helped."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from domain.states import PipelineState
from interfaces import cli_client as c

Command = Callable[[argparse.Namespace], int]
P = TypeVar("P", bound=argparse.ArgumentParser)

STATES = tuple(state.value for state in PipelineState)


URL_HELP = f"publishd's address (default: $PUBLISHD_URL, else {c.DEFAULT_URL})"


def _connection(
    parser: argparse.ArgumentParser, *, json_help: str | None, url_help: str = URL_HELP
) -> None:
    parser.add_argument("--url", metavar="URL", help=url_help)
    parser.add_argument("--token", metavar="TOKEN", help="the API token (default: $PUBLISHD_TOKEN)")
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)


def _running(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="wait for the end and print the final status"
    )
    parser.add_argument(
        "--follow", action="store_true", help="live progress per phase until the end"
    )


def _command(
    sub: argparse._SubParsersAction[P],
    name: str,
    command: Command,
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(description or help_text, 79),
        epilog=c.EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=partial(c.run_client_command, command))
    return parser


def _draft_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", help="the workspace id")
    parser.add_argument("user", help="the user whose draft it is")


def _pipeline_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline_id", help="the pipeline's id (plan and publish print it)")


def add_client_commands(sub: argparse._SubParsersAction[P]) -> None:
    """plan, publish, run, retry, cancel, status, follow, pipelines list and audit."""
    plan = _command(
        sub,
        "plan",
        c.cmd_plan,
        "plan a user's draft: phases, counts, estimated calls, each entry's diff",
        "Plan the publish of a user's draft and show it: the phases with their entries"
        " and connector calls, and each entry's before → after diff. Nothing is sent to"
        " the service; `publishd run PIPELINE` runs the plan.",
    )
    _draft_args(plan)
    _connection(plan, json_help="print the API's plan JSON unchanged")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when changes are planned, 0 when there is nothing to publish, 1 on error",
    )

    publish = _command(
        sub,
        "publish",
        c.cmd_publish,
        "plan a user's draft, show the plan, ask, then run it",
        "Plan a user's draft, show the plan and ask `Run this plan? [y/N]`; only y runs"
        " it, and the run is that plan's. Without a terminal on stdin (or with --json)"
        " publish refuses unless --yes is given.",
    )
    _draft_args(publish)
    _connection(publish, json_help="no plan shown; print the run's JSON (needs --yes)")
    publish.add_argument("--yes", "-y", action="store_true", help="run the plan without asking")
    _running(publish)

    for name, command, text in (
        ("run", c.cmd_run, "run a planned pipeline"),
        ("retry", c.cmd_retry, "run a pipeline's failed and skipped entries again"),
    ):
        parser = _command(sub, name, command, text)
        _pipeline_arg(parser)
        _connection(parser, json_help="print the API's JSON unchanged (--follow: NDJSON events)")
        _running(parser)
    cancel = _command(sub, "cancel", c.cmd_cancel, "ask a running pipeline to stop")
    _pipeline_arg(cancel)
    _connection(cancel, json_help="print the API's JSON unchanged")
    status = _command(
        sub,
        "status",
        c.cmd_status,
        "a pipeline's state, counts per phase, errors, and how to retry it",
    )
    _pipeline_arg(status)
    _connection(status, json_help="print the API's status JSON unchanged")
    follow = _command(sub, "follow", c.cmd_follow, "live progress of a pipeline until its end")
    _pipeline_arg(follow)
    _connection(follow, json_help="print the pipeline's events as NDJSON")

    pipelines = sub.add_parser("pipelines", help="list pipelines")
    pipelines_sub = pipelines.add_subparsers(dest="pipelines_command", required=True)
    listing = _command(pipelines_sub, "list", c.cmd_pipelines, "pipelines, newest first")
    listing.add_argument("--workspace", help="only this workspace's")
    listing.add_argument("--user", help="only this user's")
    listing.add_argument("--state", choices=STATES, help="only pipelines in this state")
    listing.add_argument("--limit", type=int, help="at most this many (1-500; default 50)")
    listing.add_argument(
        "--before", metavar="PIPELINE", help="only pipelines created before this one (paging)"
    )
    _connection(listing, json_help="print the API's JSON unchanged")

    audit = sub.add_parser("audit", help="export events or show a pipeline at a past version")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    export = _command(audit_sub, "export", c.cmd_audit, "a workspace's events as NDJSON")
    export.add_argument("--workspace", required=True, help="the workspace whose events")
    _connection(export, json_help=None)
    show = _command(
        audit_sub,
        "pipeline",
        c.cmd_audit,
        "a pipeline's state at a version, as JSON",
        "A pipeline as it was after its event VERSION (the latest without --version),"
        " as JSON. With --url, through the HTTP API (GET /pipelines/{id}/versions/{n});"
        " without, read from the database (PUBLISHD_DATABASE_URL).",
    )
    _pipeline_arg(show)
    show.add_argument(
        "--version", type=int, help="the event number (1 is the plan); default: the latest"
    )
    _connection(
        show,
        json_help=None,
        url_help="read through this publishd's HTTP API (default: the database directly)",
    )
