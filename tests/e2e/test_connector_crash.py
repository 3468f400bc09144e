"""A worker process killed with SIGKILL mid-publish, against each service; another resumes.

``test_worker_crash`` does this against the sandbox alone; here the same
crash meets each service's own protection against a create sent twice: the
sandbox's idempotency keys, the Webflow connector's look-up by slug, the
Airtable connector's upserts. The service runs in this process (answers held
``LATENCY_S`` after a write is applied, so the kill leaves a write applied
and unrecorded); ``publishd worker`` runs as a real subprocess on this test's
schema, with a 2 s lease and the token in its environment. It is killed once
the service has seen ``KILL_AFTER`` of its requests; a second worker takes the
run over when the lease ends. The write in flight at the kill is applied and
unrecorded (checked), so the resume must find what it made rather than make
it again. Then, on the service's side: no slug twice,
every create recorded with the id of the record the service holds, every
book pointing at its author, and the pipeline completed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest

from bench.reliability import LEASE_SECONDS, wait_until, worker_process
from domain.entries import EntryStatus
from domain.states import TERMINAL_STATES
from infrastructure.postgres.database import Database
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime
from tests.support.publishing import projecting_runtime
from tests.support.services import KINDS, Service, service

pytestmark = pytest.mark.timeout(90)

LATENCY_S = 0.4
NEW_AUTHORS, NEW_BOOKS = 10, 30
KILL_AFTER = {"sandbox": 1, "webflow": 1, "airtable": 2}
"""The connector's requests the service sees before the kill: the authors' create (held
in flight), or on Airtable the authors' and the first of the books' three."""
WS = "crash"


@pytest.fixture
def runtime(database: Database, schema: str) -> Iterator[Runtime]:
    settings = Settings(
        database_url=database.conninfo, db_schema=schema, lease_seconds=LEASE_SECONDS
    )
    with projecting_runtime(settings) as rt:
        yield rt


def prepare(runtime: Runtime, svc: Service) -> str:
    """A main pulled from the service, a draft of 40 creates in two waves; the pipeline id."""
    svc.write("authors", "Ada", "ada")
    runtime.app.create_workspace(WS, svc.config())
    for folder, folder_schema in svc.schemas().items():
        runtime.app.register_schema(WS, folder, folder_schema)
    pull = runtime.app.start_pull(WS, None)

    async def go() -> None:
        try:
            await runtime.worker().run_pull(pull.pull_id)
        finally:
            await runtime.aclose_connectors()

    asyncio.run(go())
    assert runtime.app.pull(pull.pull_id).state == "completed"
    files = {
        f"authors/new-{j:02}.json": {"name": f"New {j}", "slug": f"new-{j:02}"}
        for j in range(NEW_AUTHORS)
    }
    for i in range(NEW_BOOKS):  # each points at a new author: a second wave of creates
        files[f"books/book-{i:02}.json"] = {
            "name": f"Book {i}",
            "slug": f"book-{i:02}",
            "author": svc.points_at(f"authors/new-{i % NEW_AUTHORS:02}.json"),
        }
    for path, content in files.items():
        runtime.app.write_draft_file(WS, "alice", path, content)
    pipeline = runtime.app.plan(WS, "alice")
    assert len(pipeline.entries) == NEW_AUTHORS + NEW_BOOKS
    return str(pipeline.pipeline_id)


def unrecorded(runtime: Runtime, svc: Service, pipeline_id: str) -> int:
    """Records the run made in the service beyond the creates the pipeline holds published."""
    made = len(svc.rows("authors")) - 1 + len(svc.rows("books"))
    entries = runtime.app.pipeline(pipeline_id).entries.values()
    return made - sum(entry.status == EntryStatus.PUBLISHED for entry in entries)


def state(runtime: Runtime, pipeline_id: str) -> str:
    found: str = runtime.app.pipeline(pipeline_id).state
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_worker_is_resumed_without_duplicates_or_lost_outcomes(
    runtime: Runtime,
    database: Database,
    schema: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with service(kind).running(monkeypatch) as svc:  # the token here too, for the pull
        pipeline_id = prepare(runtime, svc)
        svc.reset_counts()
        svc.set_latency(LATENCY_S)
        runtime.app.request_run(pipeline_id)

        with worker_process(database, schema, "doomed", svc.env()) as doomed:
            wait_until(
                lambda: svc.requests() >= KILL_AFTER[kind] or doomed.poll() is not None,
                30,
                f"{KILL_AFTER[kind]} requests at the {kind} service",
            )
            alive = doomed.poll() is None
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
        interrupted = alive and state(runtime, pipeline_id) not in TERMINAL_STATES
        # the request in flight at the kill is applied: records no outcome names yet
        wait_until(
            lambda: unrecorded(runtime, svc, pipeline_id) > 0, 5, "the write in flight to land"
        )
        with worker_process(database, schema, "resumer", svc.env()):
            wait_until(
                lambda: state(runtime, pipeline_id) in TERMINAL_STATES,
                40,
                f"pipeline {pipeline_id} to end",
            )
        svc.set_latency(0)

        pipeline = runtime.app.pipeline(pipeline_id)
        assert interrupted, "the kill did not land mid-run"
        assert pipeline.state == "completed", pipeline.counts()
        assert svc.duplicates() == 0
        authors, books = svc.by_slug("authors"), svc.by_slug("books")
        assert len(authors) == NEW_AUTHORS + 1 and len(books) == NEW_BOOKS
        lost = []
        for entry in pipeline.entries.values():
            folder, name = entry.path.split("/")
            row = (authors if folder == "authors" else books)[name.removesuffix(".json")][0]
            if entry.status != EntryStatus.PUBLISHED or entry.record_id != row.id:
                lost.append((entry.path, entry.status, entry.record_id, row.id))
        assert lost == []
        for i in range(NEW_BOOKS):
            book = books[f"book-{i:02}"][0]
            assert book.author == authors[f"new-{i % NEW_AUTHORS:02}"][0].id, book
