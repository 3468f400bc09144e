"""PublishdApplicationRecorder on real PostgreSQL: big saves are atomic, ordered, notified.

Every test has a timeout: the stock recorder never returns from a save of more
than ~1,100 events, and a regression must fail, not hang the suite.
"""

from __future__ import annotations

import copy
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Notification,
    RecordConflictError,
    StoredEvent,
    Tracking,
)
from eventsourcing.system import ProcessApplication

from application.app import PublishdApplication
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from infrastructure.postgres.database import Database, from_url
from infrastructure.postgres.factory import PublishdPostgresFactory
from infrastructure.postgres.recorder import (
    COPY_THRESHOLD,
    PublishdApplicationRecorder,
    PublishdProcessRecorder,
)

pytestmark = pytest.mark.timeout(60)


class RecorderTestApp(Application[UUID]):
    pass


class Ledger(Aggregate):
    """A test aggregate that records any number of small events in one command."""

    @event("Opened")
    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []

    def add(self, tag: str, count: int) -> None:
        for i in range(count):
            self._line_added(f"{tag}-{i}")

    @event("LineAdded")
    def _line_added(self, line: str) -> None:
        self.lines.append(line)


def make_app(database: Database, schema: str, **env: str) -> RecorderTestApp:
    return RecorderTestApp(
        env={**database.eventsourcing_env(schema), "AGGREGATE_CACHE_MAXSIZE": "100", **env}
    )


@pytest.fixture
def app(database: Database, schema: str) -> Iterator[RecorderTestApp]:
    application = make_app(database, schema)
    yield application
    application.close()


def recorder_of(app: Application[UUID]) -> PublishdApplicationRecorder:
    assert isinstance(app.recorder, PublishdApplicationRecorder)
    return app.recorder


def all_notifications(app: Application[UUID]) -> list[Notification]:
    return list(recorder_of(app).select_notifications(start=None, limit=10**7))


def planned_pipeline(events: int) -> PublishPipeline:
    pipeline = PublishPipeline(
        pipeline_id=str(uuid4()),
        workspace_id=str(uuid4()),
        user="tester",
        main_version=1,
        draft_version=1,
        phases=[{"phase": "create", "entries": events - 1}],
    )
    if events > 1:
        pipeline.plan_entries(
            [
                PlanEntry(
                    path=f"items/{i}.json",
                    phase="create",
                    operation={"type": "create", "folder": "items", "fields": {"n": i}},
                )
                for i in range(events - 1)
            ]
        )
    return pipeline


def test_the_persistence_module_topic_names_exactly_our_factory(app: RecorderTestApp) -> None:
    assert type(app.factory) is PublishdPostgresFactory
    assert type(app.recorder) is PublishdApplicationRecorder
    by_module = InfrastructureFactory.construct(
        {"PERSISTENCE_MODULE": "infrastructure.postgres.factory", **app.env}
    )
    try:
        assert type(by_module) is PublishdPostgresFactory
    finally:
        by_module.close()


@pytest.mark.parametrize("events", [1, 1_000, 5_000, 20_000])
def test_one_save_is_atomic_complete_ordered_and_reads_back(
    app: RecorderTestApp, database: Database, schema: str, events: int
) -> None:
    first = app.save(planned_pipeline(3))  # something before, so ids don't start at 1
    pipeline = planned_pipeline(events)

    recordings = app.save(pipeline)

    ids = [r.notification.id for r in recordings]
    assert ids == list(range(first[-1].notification.id + 1, first[-1].notification.id + 1 + events))
    stored = recorder_of(app).select_events(pipeline.id)
    assert [(s.originator_version, s.topic, s.state) for s in stored] == [
        (r.notification.originator_version, r.notification.topic, r.notification.state)
        for r in recordings
    ]
    assert [s.originator_version for s in stored] == list(range(1, events + 1))
    tail = all_notifications(app)[len(first) :]
    assert [(n.id, n.originator_version) for n in tail] == [
        (i, v) for i, v in zip(ids, range(1, events + 1), strict=True)
    ]
    fresh = make_app(database, schema, AGGREGATE_CACHE_MAXSIZE="")
    try:
        replayed: PublishPipeline = fresh.repository.get(pipeline.id)
    finally:
        fresh.close()
    assert replayed.version == events
    assert replayed.entries == pipeline.entries


@pytest.mark.parametrize("lines", [1, 3_000])
def test_concurrent_conflicting_saves_one_wins_and_the_loser_writes_nothing(
    app: RecorderTestApp, lines: int
) -> None:
    ledger = Ledger(name="shared")
    app.save(ledger)
    copies = {"a": copy.deepcopy(ledger), "b": copy.deepcopy(ledger)}
    for tag, one in copies.items():
        one.add(tag, lines)
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def save(tag: str) -> None:
        barrier.wait()
        try:
            outcomes[tag] = app.save(copies[tag])
        except Exception as e:
            outcomes[tag] = e

    threads = [threading.Thread(target=save, args=(tag,)) for tag in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    losers = [tag for tag, o in outcomes.items() if isinstance(o, Exception)]
    assert len(losers) == 1, outcomes
    (loser,) = losers
    (winner,) = set(copies) - {loser}
    assert isinstance(outcomes[loser], IntegrityError)
    assert isinstance(outcomes[loser], RecordConflictError)
    stored = recorder_of(app).select_events(ledger.id)
    assert len(stored) == 1 + lines
    assert all(f'"{winner}-'.encode() in s.state for s in stored[1:])
    assert not any(f'"{loser}-'.encode() in s.state for s in stored)


@pytest.mark.parametrize("lines", [COPY_THRESHOLD // 2, 5_000])
def test_a_save_that_conflicts_on_its_last_event_writes_nothing(
    app: RecorderTestApp, lines: int
) -> None:
    ledger = Ledger(name="doomed")
    app.save(ledger)
    recorder = recorder_of(app)
    planted = StoredEvent(ledger.id, 1 + lines, "planted:Event", b"{}")
    recorder.insert_events([planted])
    before = all_notifications(app)
    ledger.add("late", lines)  # versions 2 .. 1 + lines: only the last one is taken

    with pytest.raises(IntegrityError):
        app.save(ledger)

    assert all_notifications(app) == before
    assert [s.originator_version for s in recorder.select_events(ledger.id)] == [1, 1 + lines]
    other = app.save(Ledger(name="after"))  # and the recorder still works
    assert other[0].notification.id > before[-1].id


def test_a_tailing_reader_never_sees_a_gap_filled_later(app: RecorderTestApp) -> None:
    """Writers of mixed sizes race; a reader that only asks for ``id > last``
    must end up having seen every event: nothing committed behind its back."""
    recorder = recorder_of(app)
    sizes = [1, 700, 3, COPY_THRESHOLD + 1, 40, 1_500, 2]
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        last = 0
        try:
            while True:
                done = stop.is_set()  # read once more after the writers finished
                batch = recorder.select_notifications(
                    start=last, limit=10_000, inclusive_of_start=False
                )
                seen.extend(n.id for n in batch)
                last = batch[-1].id if batch else last
                if done and not batch:
                    return
        except BaseException as e:
            errors.append(e)

    def write(worker: int) -> None:
        try:
            for size in sizes[worker:] + sizes[:worker]:
                ledger = Ledger(name=f"w{worker}")
                ledger.add("x", size - 1)
                recordings = app.save(ledger)
                ids = [r.notification.id for r in recordings]
                assert ids == list(range(ids[0], ids[0] + size))
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()

    assert not errors, errors
    everything = [n.id for n in all_notifications(app)]
    assert len(everything) == 4 * sum(sizes)
    assert seen == everything


def test_notify_carries_the_highest_notification_id_of_the_save(
    app: RecorderTestApp, database: Database
) -> None:
    channel = recorder_of(app).channel_name
    with database.connect(autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel}"')
        small = app.save(Ledger(name="one"))
        big_ledger = Ledger(name="many")
        big_ledger.add("x", 2_000)
        big = app.save(big_ledger)
        expected = {str(small[-1].notification.id), str(big[-1].notification.id)}

        received: set[str] = set()
        deadline = time.monotonic() + 10
        while not expected <= received and time.monotonic() < deadline:
            for notify in listener.notifies(timeout=0.5):
                assert notify.channel == channel
                received.add(notify.payload)
    # Other test runs on the same server may share the channel name, so
    # only require that ours arrived, not that nothing else did.
    assert expected <= received


class RecorderTestProcess(ProcessApplication[UUID]):
    pass


def test_process_recorder_saves_tracking_and_many_events_atomically(
    database: Database, schema: str
) -> None:
    process = RecorderTestProcess(env=database.eventsourcing_env(schema))
    try:
        recorder = process.recorder
        assert isinstance(recorder, PublishdProcessRecorder)
        originator = uuid4()
        rows = [StoredEvent(originator, v, "t:E", b"{}") for v in range(1, 2_001)]

        ids = recorder.insert_events(rows, tracking=Tracking("upstream", 7))

        assert ids is not None and len(ids) == 2_000
        assert recorder.max_tracking_id("upstream") == 7
        again = [StoredEvent(originator, v, "t:E", b"{}") for v in range(2_001, 4_001)]
        with pytest.raises(IntegrityError):
            recorder.insert_events(again, tracking=Tracking("upstream", 7))
        assert len(recorder.select_events(originator)) == 2_000
    finally:
        process.close()


def _start_app(url: str, schema: str, barrier: Any) -> None:
    database = from_url(url)
    barrier.wait()
    PublishdApplication(database.eventsourcing_env(schema, 2))


@pytest.mark.timeout(120)
def test_processes_starting_together_all_create_the_tables(database: Database, schema: str) -> None:
    """Concurrent DDL races in PostgreSQL; the stock recorder crashed ~1 start in 3 here."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    starters = [
        ctx.Process(target=_start_app, args=(database.conninfo, schema, barrier)) for _ in range(4)
    ]
    for process in starters:
        process.start()
    for process in starters:
        process.join(90)
    assert [p.exitcode for p in starters] == [0, 0, 0, 0]


def _save_without_creating_tables(url: str, schema: str, lines: list[int], ids: Any) -> None:
    database = from_url(url)
    app = RecorderTestApp(env={**database.eventsourcing_env(schema), "CREATE_TABLE": "n"})
    try:
        for count in lines:
            ledger = Ledger(name=f"from a process that created nothing: {count}")
            ledger.add("x", count)
            app.save(ledger)
            ids.put(str(ledger.id))
    finally:
        app.close()


@pytest.mark.timeout(120)
def test_a_process_that_did_not_create_the_tables_saves_events(
    app: RecorderTestApp, database: Database, schema: str
) -> None:
    """The tables exist (``app`` created them); a worker started with
    ``CREATE_TABLE=n`` must save through both insert paths, small and COPY."""
    lines = [2, COPY_THRESHOLD + 10]
    ctx = multiprocessing.get_context("spawn")
    ids = ctx.Queue()
    child = ctx.Process(
        target=_save_without_creating_tables, args=(database.conninfo, schema, lines, ids)
    )
    child.start()
    child.join(90)
    assert child.exitcode == 0

    for count in lines:
        ledger: Ledger = app.repository.get(UUID(ids.get(timeout=10)))
        assert ledger.lines == [f"x-{i}" for i in range(count)]
