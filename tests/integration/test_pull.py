"""Pull mirrors the sandbox into main: new, changed, unchanged and deleted upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.errors import PublishInProgress, UnknownFolder
from infrastructure.postgres.database import Database
from tests.support.publishing import Harness, harness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def lib(database: Database, schema: str) -> Iterator[Harness]:
    with harness(database, schema) as h:
        yield h


def test_a_first_pull_names_files_by_slug_and_indexes_ids_and_references(lib: Harness) -> None:
    ids = lib.setup_library()  # ends with a pull

    pull = lib.app.pull(lib.pull().pull_id)  # a second, idle pull
    assert pull.state == "completed"
    assert pull.counts == {"created": 0, "updated": 0, "unchanged": 6, "deleted": 0}
    book = lib.main("books/old-man.json")
    assert book is not None
    assert book["id"] == ids["oldman"] and book["author"] == ids["hemingway"]
    assert {"createdOn", "lastUpdated", "cdnUrl"} <= book.keys()
    row = lib.runtime.views.file_index_by_record("lib", "authors", ids["woolf"])
    assert row is not None and row["filename"] == "woolf.json" and row["last_seen_at"]
    refs = lib.runtime.views.references("lib", "authors", "woolf.json", None)
    assert sorted(r["source_path"] for r in refs) == [
        "books/dalloway.json",
        "books/lighthouse.json",
    ]
    assert all(r["target_record_id"] == ids["woolf"] for r in refs)


def test_a_pull_counts_created_updated_unchanged_and_deleted(lib: Harness) -> None:
    ids = lib.setup_library()
    before = lib.runtime.views.file_index_by_record("lib", "books", ids["lighthouse"])
    assert before is not None
    lib.sandbox(
        "PATCH",
        f"/collections/books/items/{ids['oldman']}",
        json={"fieldData": {"title": "Old Man, upstream"}},
    )
    lib.create_item("books", {"title": "Upstream", "slug": "old-man"})  # the slug is taken
    lib.sandbox(
        "PATCH",
        f"/collections/menus/items/{lib.item_by('menus', 'slug', 'main')['id']}",
        json={"fieldData": {"items": [ids["oldman"]]}},
    )
    lib.sandbox("DELETE", "/collections/books/items", json={"items": [ids["dalloway"]]})

    pull = lib.app.pull(lib.pull().pull_id)

    assert pull.counts == {"created": 1, "updated": 2, "unchanged": 3, "deleted": 1}
    assert lib.main("books/old-man.json")["title"] == "Old Man, upstream"  # type: ignore[index]
    assert lib.main("books/old-man-2.json")["title"] == "Upstream"  # type: ignore[index]
    assert lib.main("books/dalloway.json") is None
    assert lib.runtime.views.file_index_by_record("lib", "books", ids["dalloway"]) is None
    after = lib.runtime.views.file_index_by_record("lib", "books", ids["lighthouse"])
    assert after is not None and after["last_seen_at"] > before["last_seen_at"]
    assert lib.runtime.views.references("lib", "books", "dalloway.json", None) == []


def test_a_pull_of_chosen_folders_and_the_refusals(lib: Harness) -> None:
    lib.setup_library()
    lib.create_item("authors", {"name": "New", "slug": "new"})
    lib.create_item("books", {"title": "New", "slug": "new"})
    pull = lib.app.start_pull("lib", ["authors"])
    assert pull.folders == ["authors"]
    with pytest.raises(UnknownFolder):
        lib.app.start_pull("lib", ["nope"])
    lib.write("authors/x.json", {"name": "X", "slug": "x"})
    pipeline = lib.app.plan("lib", "alice")
    lib.app.request_run(pipeline.pipeline_id)
    with pytest.raises(PublishInProgress):
        lib.app.start_pull("lib", None)
