"""What the client commands print for a person, and the command line's own rules.

No server here: the rendering functions get the API's JSON, the prompt gets a
file of answers, the parser is walked whole.
"""

from __future__ import annotations

import argparse
import io

import pytest
from rich.console import Console

from interfaces.cli import build_parser
from interfaces.cli_client import ask_problem, confirm, end_code, pipeline_at_version_over_http
from interfaces.client import Client, ClientError
from interfaces.client_output import retry_hint, show_plan, show_status, value_text


def _console(out: io.StringIO) -> Console:
    return Console(file=out, width=80, color_system=None)


def _cells(text: str) -> list[list[str]]:
    lines = [line.split() for line in text.splitlines()]
    rows = [line for line in lines if line and line[0] in ("│", "┃")]
    return [[c for c in row if c not in ("│", "┃")] for row in rows]


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
    show_plan(plan, _console(out))
    cells = _cells(out.getvalue())
    assert ["create", "1050", "12"] in cells
    assert ["backfill", "50", "1"] in cells
    assert ["total", "1100", "13"] in cells
    assert "1050 to create, 50 to backfill; estimated calls: 13" in out.getvalue()
    assert "publishd run p-1" in out.getvalue()


def test_each_entry_shows_its_diff_as_before_arrow_after_with_values_never_read_as_markup() -> None:
    out = io.StringIO()
    plan = {
        "pipeline_id": "p-2",
        "workspace": "acme",
        "user": "ann",
        "phases": [{"phase": "edit", "entries": 1, "calls": 1}],
        "estimated_calls": 1,
        "entries": [
            {
                "path": "books/[b].json",
                "phase": "edit",
                "operation": {"type": "update", "folder": "books", "record_id": "b1"},
                "deferred_fields": ["author"],
                "diff": [
                    {"field": "title", "before": "[bold]Old[/bold]", "after": "New"},
                    {"field": "tags", "before": None, "after": ["a", "b"]},
                    {"field": "body", "before": "x" * 200, "after": ""},
                ],
            }
        ],
    }
    show_plan(plan, _console(out), hint=False)
    text = out.getvalue()
    assert "~ edit     books/[b].json  record b1" in text
    assert 'title: "[bold]Old[/bold]" → "New"' in text
    assert 'tags: null → ["a", "b"]' in text
    assert f'body: "{"x" * 58}… → ""' in text
    assert "deferred to backfill: author" in text
    assert "publishd run" not in text


def test_value_text_is_json_on_one_line_cut_to_sixty_characters() -> None:
    assert value_text("a\nb") == '"a\\nb"'
    assert value_text({"k": 1}) == '{"k": 1}'
    assert len(value_text(list(range(100)))) == 60


@pytest.mark.parametrize(
    ("state", "code", "hint"),
    [
        ("planned", 0, False),
        ("running", 0, False),
        ("completed", 0, False),
        ("completed_with_errors", 3, True),
        ("failed", 3, True),
        ("cancelled", 3, False),
        ("stale", 3, False),
    ],
)
def test_a_status_says_how_to_retry_a_failed_pipeline_and_its_exit_code(
    state: str, code: int, hint: bool
) -> None:
    status = {
        "pipeline_id": "p-3",
        "workspace": "acme",
        "user": "ann",
        "state": state,
        "phase": "create",
        "counts": {"create": {"planned": 2, "published": 1, "failed": 1, "skipped": 0}},
        "errors": [
            {
                "path": "books/x.json",
                "phase": "create",
                "message": "no [author]",
                "code": "rejected",
            }
        ],
    }
    out = io.StringIO()
    show_status(status, _console(out))
    text = out.getvalue()
    assert f"pipeline p-3 (acme/ann): {state}, phase create" in text
    assert ["create", "2", "1", "1", "0"] in _cells(text)
    assert "error create books/x.json: rejected: no [author]" in text
    assert ("publishd retry p-3" in text) is hint
    assert (retry_hint(status) == "publishd retry p-3") is hint
    assert end_code(status) == code


@pytest.mark.parametrize(
    ("yes", "as_json", "terminal", "refused"),
    [
        (False, False, True, None),
        (True, False, False, None),
        (True, True, False, None),
        (False, False, False, "stdin is not a terminal: pass --yes"),
        (False, True, True, "cannot ask before running: pass --yes"),
    ],
)
def test_publish_asks_only_on_a_terminal_and_refuses_elsewhere_without_yes(
    yes: bool, as_json: bool, terminal: bool, refused: str | None
) -> None:
    problem = ask_problem(yes=yes, as_json=as_json, stdin_is_terminal=terminal)
    assert (problem is None) is (refused is None)
    assert refused is None or (problem is not None and refused in problem)


@pytest.mark.parametrize(
    ("answer", "runs"),
    [("y\n", True), ("YES\n", True), (" y \n", True), ("n\n", False), ("\n", False), ("", False)],
)
def test_only_y_or_yes_confirms(answer: str, runs: bool) -> None:
    out = io.StringIO()
    assert confirm(_console(out), io.StringIO(answer)) is runs
    assert "Run this plan? [y/N] " in out.getvalue()


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _actions(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((path, action))
    return found


def test_every_option_and_argument_of_every_command_has_help() -> None:
    actions = _actions(build_parser(), "publishd")
    assert len(actions) > 60
    unhelped = [f"{path} {a.dest}" for path, a in actions if not a.help]
    assert unhelped == []


def test_every_command_has_help_and_client_commands_document_exit_codes_and_env() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert all(choice.help for choice in sub._choices_actions)
    for name in ("plan", "publish", "run", "retry", "status", "follow", "cancel"):
        epilog = sub.choices[name].epilog or ""
        assert "exit codes:" in epilog and "PUBLISHD_URL" in epilog and "PUBLISHD_TOKEN" in epilog


def test_a_wrong_command_line_exits_1() -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["plan", "--nope"])
    assert exited.value.code == 1


class _Versions(Client):
    """A pipeline with ``events`` events, as ``GET /pipelines/{id}/versions/{n}`` answers."""

    def __init__(self, events: int) -> None:
        super().__init__("http://x", None)
        self.events = events
        self.asked: list[int] = []

    def request(self, method: str, path: str, **_: object) -> object:  # type: ignore[override]
        n = int(path.rsplit("/", 1)[1])
        self.asked.append(n)
        if n > self.events:
            raise ClientError(404, {"error": "not_found", "message": f"no event {n}"})
        return {"version": n}


@pytest.mark.parametrize("events", [1, 2, 3, 7, 8, 9, 100, 1025])
def test_the_latest_version_over_http_is_found_in_logarithmic_requests(events: int) -> None:
    client = _Versions(events)
    assert pipeline_at_version_over_http(client, "p", None) == {"version": events}
    assert len(client.asked) <= 2 * events.bit_length() + 2
    assert pipeline_at_version_over_http(client, "p", 1) == {"version": 1}


def test_an_absent_pipeline_over_http_is_the_apis_not_found() -> None:
    with pytest.raises(ClientError, match="no event 1"):
        pipeline_at_version_over_http(_Versions(0), "p", None)
