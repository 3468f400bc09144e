"""``publishd``: the server roles, the sandbox, tokens, and client commands.

Settings come from ``PUBLISHD_*`` environment variables (see
``infrastructure.settings``); every role honours ``PUBLISHD_DATABASE_URL`` and
``PUBLISHD_DATA_DIR`` so separate processes share one database. The client
commands (plan, publish, ...) live in ``interfaces.cli_client``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from interfaces.cli_client import EXIT_CODES
from interfaces.cli_client_args import add_client_commands

if TYPE_CHECKING:
    from infrastructure.postgres.tokens import TokenRow
    from infrastructure.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    from infrastructure.settings import Settings

    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return Settings(**overrides)


# --- server roles ------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from interfaces.server import serve

    return serve(_settings(args), announce=True)


def cmd_worker(args: argparse.Namespace) -> int:
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(_settings(args))
    worker = runtime.worker(args.name)
    deliveries = runtime.webhook_worker()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"worker {worker.name} running", flush=True)
        try:
            await asyncio.gather(worker.serve(stop), deliveries.serve(stop))
        finally:
            await runtime.aclose_connectors()
            await deliveries.sender.aclose()

    try:
        asyncio.run(main())
    finally:
        runtime.close()
    return 0


def cmd_projections(args: argparse.Namespace) -> int:
    import threading

    from infrastructure.postgres.projections.rebuild import rebuild
    from infrastructure.postgres.projections.verify import verify
    from interfaces.bootstrap import Runtime

    runtime = Runtime.build(_settings(args))
    try:
        if args.action == "run":
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            print("projections running", flush=True)
            runtime.run_projections(stop)
            return 0
        events_table = runtime.events_table
        schema = runtime.settings.db_schema
        if args.action == "rebuild":
            reached = rebuild(runtime.database, schema, args.name, events_table=events_table)
            print(f"rebuilt {args.name or 'all projections'}: {json.dumps(reached)}")
            return 0
        report = verify(runtime.database, schema, events_table=events_table)
        if not report.ok:
            print(report.to_json())
            return 1
        print("projections verified: every table equals a rebuild")
        return 0
    finally:
        runtime.close()


def cmd_sandbox(args: argparse.Namespace) -> int:
    from infrastructure.sandbox.server import serve

    serve(
        host=args.host or "127.0.0.1",
        port=args.port,
        seed_file=args.seed,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        rate_limit=args.rate_limit,
    )
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """Refusals are one line on stderr: exit 2 for a wrong request, 1 for something not there."""
    from interfaces.bootstrap import Runtime

    problem = _token_request_problem(args)
    if problem is not None:
        print(f"publishd tokens: {problem}", file=sys.stderr)
        return 2
    runtime = Runtime.build(_settings(args))
    try:
        if args.action == "list":
            _print_tokens(runtime.tokens.list_tokens(), as_json=args.json)
            return 0
        if args.action == "revoke":
            target: str = args.target
            found = (
                runtime.tokens.revoke_id(int(target))
                if target.isdecimal()
                else runtime.tokens.revoke(target)
            )
            if not found:
                print(f"publishd tokens: no live token {target}", file=sys.stderr)
                return 1
            print(f"revoked {target}")
            return 0
        if args.workspace is not None and not runtime.app.workspace_exists(args.workspace):
            print(f"publishd tokens: workspace {args.workspace} does not exist", file=sys.stderr)
            return 1
        token = runtime.tokens.create_token(args.workspace, _scopes(args.scopes), admin=args.admin)
    except ValueError as refused:
        print(f"publishd tokens: {refused}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    print(token)
    return 0


def _scopes(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _token_request_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line itself, before any database is opened."""
    import re

    from infrastructure.postgres.tokens import check_scopes
    from interfaces.http.models import WORKSPACE_ID

    if args.action == "revoke":
        return None if args.target else "revoke needs a token id (see tokens list) or the token"
    if args.action == "list":
        return None
    if args.admin:
        if args.workspace is not None or args.scopes is not None:
            return "--admin makes a global token: give it without --workspace or --scopes"
        return None
    if args.workspace is None:
        return "give --workspace WS --scopes read,write,publish, or --admin"
    if not re.fullmatch(WORKSPACE_ID.strip("^$"), args.workspace):
        return f"{args.workspace!r} is not a valid workspace id"
    try:
        check_scopes(frozenset(_scopes(args.scopes)))
    except ValueError as refused:
        return f"{refused} (--scopes read,write,publish)"
    return None


def _print_tokens(rows: Sequence[TokenRow], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{**vars(r), "created_at": r.created_at.isoformat()} for r in rows]))
        return
    for r in rows:
        kind = "admin" if r.admin else f"{r.workspace} {','.join(r.scopes)}"
        state = "revoked" if r.revoked else "live"
        print(f"{r.id}\t{kind}\t{state}\t{r.created_at.isoformat()}")


def cmd_demo(args: argparse.Namespace) -> int:
    from interfaces.demo.run import run_demo

    return run_demo(_settings(args), local=args.command == "run-local")


def cmd_connectors(args: argparse.Namespace) -> int:
    """``connectors check WS``: the credentials tried, the mapping compared with the schemas."""
    from interfaces.bootstrap import Runtime
    from interfaces.connectors_check import Report, check

    runtime = Runtime.build()
    try:
        workspace = runtime.app.workspace(args.workspace)

        async def go() -> Report:
            try:
                return await check(workspace, runtime.connector_for(workspace))
            finally:
                await runtime.aclose_connectors()

        report = asyncio.run(go())
    finally:
        runtime.close()
    for line in report.lines:
        print(line)
    for problem in report.problems:
        print(f"problem: {problem}")
    print("ok" if not report.problems else f"{len(report.problems)} problem(s)")
    return 0 if not report.problems else 1


class Parser(argparse.ArgumentParser):
    """A wrong command line exits 1, like any error: 2 means "changes planned" to scripts."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"publishd {version('publishd')}"
    except PackageNotFoundError:  # (run from a tree that was never installed)
        return "publishd (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="publishd",
        description=__doc__.splitlines()[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="API + streams + workers + projections")
    serve.add_argument("--host", help="the address to listen on (default: $PUBLISHD_HOST)")
    serve.add_argument("--port", type=int, help="the port to listen on (default: $PUBLISHD_PORT)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run pipelines and pulls (scale-out role)")
    worker.add_argument("--name", help="the worker's name in leases (default: worker-<random>)")
    worker.set_defaults(func=cmd_worker)

    projections = sub.add_parser("projections", help="run, rebuild or verify projections")
    projections.add_argument(
        "action",
        choices=["run", "rebuild", "verify"],
        help="run: keep them up to date; rebuild: from the events; verify: compare with a rebuild",
    )
    projections.add_argument("name", nargs="?", help="rebuild: only this projection")
    projections.set_defaults(func=cmd_projections)

    sandbox = sub.add_parser("sandbox", help="the sandbox CMS service")
    sandbox.add_argument("action", choices=["serve"], help="serve: run it until SIGTERM/SIGINT")
    sandbox.add_argument("--host", help="the address to listen on (default: 127.0.0.1)")
    sandbox.add_argument("--port", type=int, required=True, help="the port to listen on")
    sandbox.add_argument("--seed", metavar="FILE", help="collections and items to start with")
    sandbox.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every answer (default: 0)"
    )
    sandbox.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        help="share of requests answered with an error (0-1; default: 0)",
    )
    sandbox.add_argument(
        "--rate-limit",
        help="a real limit, N/s or N/min (a bare N is per second), over a sliding window;"
        " over it 429 with Retry-After",
    )
    sandbox.set_defaults(func=cmd_sandbox)

    tokens = sub.add_parser("tokens", help="API tokens")
    tokens.add_argument("action", choices=["create", "list", "revoke"], help="what to do")
    tokens.add_argument("target", nargs="?", help="revoke: a token id (tokens list) or the token")
    tokens.add_argument("--workspace", help="create: a token for this workspace only")
    tokens.add_argument("--scopes", help="create: read,write,publish (comma-separated)")
    tokens.add_argument("--admin", action="store_true", help="create: a global admin token")
    tokens.add_argument("--json", action="store_true", help="list: as JSON")
    tokens.set_defaults(func=cmd_tokens)

    for name, text in (
        ("demo", "the whole story in the terminal"),
        ("run-local", "what `make run` starts"),
    ):
        demo = sub.add_parser(name, help=text)
        demo.set_defaults(func=cmd_demo)

    connectors = sub.add_parser("connectors", help="check a workspace's connector")
    connectors_sub = connectors.add_subparsers(dest="connectors_command", required=True)
    checking = connectors_sub.add_parser(
        "check",
        help="try the credentials, list each mapped collection's fields, name every mismatch",
    )
    checking.add_argument("workspace", help="the workspace whose connector to check")
    checking.set_defaults(func=cmd_connectors)
    add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
