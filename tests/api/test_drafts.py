"""API.md §3 over real HTTP: files on main and in drafts, with their errors.

Bodies and queries that would break their readers are refused before anything is recorded.

One live publishd for the session (``api``), a fresh sandbox and workspace per
test (``tests/api/conftest.py``). Outcomes are checked where they land: the
sandbox's records, main's files, the pipeline's status and entries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.api_support import (
    MAX_REQUEST_BYTES,
    Publishd,
    Sandbox,
    assert_error,
    draft_url,
    main_file,
    new_workspace_id,
    write,
)

pytestmark = pytest.mark.timeout(120)


def test_files_on_main_and_through_a_draft(api: Publishd, ws: str, sandbox: Sandbox) -> None:
    book = main_file(api, ws, "books/old-man.json")
    assert book["id"] == sandbox.ids["oldman"] and book["title"] == "Old Man"
    assert book["author"] == sandbox.ids["hemingway"]
    assert {"createdOn", "lastUpdated"} <= set(book)

    edited = {**book, "title": "Old Man (revised)"}
    written = api.ok("PUT", f"{draft_url(ws)}/files/books/old-man.json", json=edited)
    assert written["path"] == "books/old-man.json"
    write(api, ws, "books/new.json", {"title": "New", "slug": "new"})
    assert api.delete(f"{draft_url(ws)}/files/books/dalloway.json").status_code == 204

    base = f"/workspaces/{ws}/files"
    assert main_file(api, ws, "books/old-man.json")["title"] == "Old Man"
    assert api.ok("GET", f"{base}/books/old-man.json?draft=alice")["title"] == "Old Man (revised)"
    assert api.ok("GET", f"{base}/books/new.json?draft=alice")["title"] == "New"
    assert api.ok("GET", f"{base}/books/lighthouse.json?draft=alice")["title"] == "Lighthouse"
    assert_error(api.get(f"{base}/books/new.json"), 404, "not_found")
    assert_error(api.get(f"{base}/books/dalloway.json?draft=alice"), 404, "not_found")
    assert api.ok("GET", f"{base}/books/dalloway.json?draft=bob")["title"] == "Dalloway"

    changes = api.ok("GET", f"{draft_url(ws)}/changes")
    assert changes["version"] >= 3
    assert changes["changes"] == [
        {"path": "books/dalloway.json", "change": "deleted"},
        {"path": "books/new.json", "change": "added"},
        {"path": "books/old-man.json", "change": "modified"},
    ]

    # deleting a file the draft added drops it
    assert api.delete(f"{draft_url(ws)}/files/books/new.json").status_code == 204
    paths = [c["path"] for c in api.ok("GET", f"{draft_url(ws)}/changes")["changes"]]
    assert paths == ["books/dalloway.json", "books/old-man.json"]

    assert api.delete(draft_url(ws)).status_code == 204
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []
    assert api.ok("GET", f"{base}/books/dalloway.json?draft=alice")["title"] == "Dalloway"


def test_changes_of_a_user_without_a_draft(api: Publishd, ws: str) -> None:
    assert api.ok("GET", f"{draft_url(ws, 'nobody')}/changes") == {"version": 0, "changes": []}


def test_file_and_draft_errors(api: Publishd, ws: str) -> None:
    base = f"/workspaces/{ws}"
    before = api.head()
    assert_error(api.get(f"{base}/files/books/absent.json"), 404, "not_found")
    assert_error(api.get(f"{new_url(base)}/files/books/old-man.json"), 404, "not_found")
    for bad in ("nope/x.json", "books/x.txt", "books/.json", "books//x.json", "books%5Cx.json"):
        assert_error(api.put(f"{draft_url(ws)}/files/{bad}", json={"a": 1}), 422, "invalid_path")
        assert_error(api.get(f"{base}/files/{bad}"), 422, "invalid_path")
    assert_error(api.get(f"{base}/files/books/old-man.json?draft=%20bad"), 422, "invalid_request")
    for body in ([1, 2], "text", 3, None):
        assert_error(
            api.put(f"{draft_url(ws)}/files/books/x.json", json=body), 422, "invalid_request"
        )
    assert_error(
        api.put(
            f"{draft_url(ws)}/files/books/x.json",
            content=b"{oops",
            headers={"Content-Type": "application/json"},
        ),
        422,
        "invalid_request",
    )
    assert_error(
        api.put(f"{draft_url(ws, '.bad')}/files/books/x.json", json={}), 422, "invalid_request"
    )
    assert_error(api.delete(f"{draft_url(ws)}/files/nope/x.json"), 422, "invalid_path")
    assert api.head() == before, "a refused request wrote something"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"title": "a\\u0000b"}',
        b'{"ti\\u0000tle": "ab"}',
        b'{"list": [1, {"deep": ["\\u0000"]}]}',
        b'{"a":' * 65 + b"1" + b"}" * 65,
        b"[" * 5000 + b"]" * 5000,
        b'{"pages": NaN}',
        b'{"pages": [Infinity, -Infinity]}',
        b'{"title": "\\ud800"}',
    ],
    ids=[
        "nul-value",
        "nul-key",
        "nul-nested",
        "65-levels",
        "5000-levels",
        "nan",
        "infinity",
        "lone-surrogate",
    ],
)
def test_bodies_that_would_break_their_readers_are_refused(
    api: Publishd, ws: str, raw: bytes
) -> None:
    """A NUL, NaN or Infinity (not JSON, though Python's json module reads them) stops
    every jsonb projection; a lone surrogate cannot be encoded as UTF-8 to be stored;
    deep nesting overflows the recursion limit."""
    before = api.head()
    url = f"{draft_url(ws)}/files/books/bad.json"
    assert_error(api.put(url, content=raw), 422, "invalid_request")
    assert api.head() == before
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []
    write(api, ws, "books/ok.json", {"a": {"b": {"c": [1, 2, {"d": "fine"}]}}})
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == [
        {"path": "books/ok.json", "change": "added"}
    ]


def test_a_nul_in_a_query_is_invalid_request(api: Publishd, ws: str) -> None:
    for url in (
        f"/workspaces/{ws}/file-index?folder=books&filename=a%00b",
        f"/workspaces/{ws}/references?folder=books&record_id=a%00b",
        f"/pipelines?workspace={ws}&user=a%00b",
        "/pipelines?before=a%00b",
    ):
        assert_error(api.get(url), 422, "invalid_request")


def new_url(base: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + new_workspace_id()


def test_a_body_over_the_limit_is_payload_too_large(api: Publishd, ws: str) -> None:
    before = api.head()
    big = {"title": "x" * MAX_REQUEST_BYTES}
    url = f"{draft_url(ws)}/files/books/big.json"
    assert_error(api.put(url, json=big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"title": "'
        for _ in range(MAX_REQUEST_BYTES // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    assert_error(api.put(url, content=chunks()), 413, "payload_too_large")
    assert api.head() == before
    write(api, ws, "books/big.json", {"title": "x" * (MAX_REQUEST_BYTES // 2)})


@pytest.mark.parametrize(
    ("user", "path", "code"),
    [
        ("alice%0A", "books/x.json", "invalid_path"),
        ("alice%0D%0A", "books/x.json", "invalid_path"),
        ("alice", "books/x.json%0A", "invalid_path"),
        ("alice", "books/x%C2%85.json", "invalid_path"),
        ("alice", "books/x%E2%80%AEnosj.json", "invalid_path"),
        ("alice", "books/x%E2%80%8B.json", "invalid_path"),
        ("alice", "books/x%EF%BB%BF.json", "invalid_path"),
        ("alice", "books/x%FF.json", "invalid_path"),
        ("alice", "books/x%C3.json", "invalid_path"),
        ("al%FFice", "books/x.json", "invalid_path"),
    ],
    ids=[
        "user-newline",
        "user-crlf",
        "path-newline",
        "path-c1",
        "path-bidi-override",
        "path-zero-width",
        "path-bom",
        "path-invalid-utf8",
        "path-truncated-utf8",
        "user-invalid-utf8",
    ],
)
def test_names_that_look_like_others_are_refused_and_nothing_written(
    api: Publishd, ws: str, user: str, path: str, code: str
) -> None:
    """``alice%0A`` made a draft ``alice\\n``; invalid UTF-8 became U+FFFD and was written."""
    before = api.head()
    url = f"/workspaces/{ws}/drafts/{user}/files/{path}"

    assert_error(api.put(url, json={"title": "look-alike"}), 422, code)
    assert_error(api.delete(url), 422, code)
    if user == "alice":
        assert_error(api.get(f"/workspaces/{ws}/files/{path}?draft=alice"), 422, code)

    assert api.head() == before, "a refused request wrote something"
    assert api.ok("GET", f"{draft_url(ws)}/changes")["changes"] == []


def test_a_draft_user_in_a_query_is_matched_whole(api: Publishd, ws: str) -> None:
    response = api.get(f"/workspaces/{ws}/files/books/old-man.json?draft=alice%0A")
    assert_error(response, 422, "invalid_request")
