"""One atomic save of a 20,000-entry plan, against raw PostgreSQL inserts.

    PUBLISHD_DATABASE_URL=postgresql://... python -m bench.event_store

Measured: ``Application.save()`` of one ``PublishPipeline`` with
``BENCH_ENTRIES`` (default 20,000) ``EntryPlanned`` events, the way the app
records a plan: transcoding included, one transaction, through
``PublishdApplicationRecorder``. Also ``recorder.insert_events`` alone on
pre-transcoded rows, to show what the database part costs.

Baseline, same run, same server: the very rows that save stored (same
columns, same bytes) inserted with plain psycopg into a table of the same
shape, in batches of 100 rows with one transaction per batch, both as
``executemany`` and as one multi-row ``INSERT ... VALUES`` per batch. The
faster of the two is the baseline of the ratio (the stricter comparison).
Each figure is the median of ``BENCH_REPEATS`` (default 5) runs.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID, uuid4

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from bench.common import database_from_env, median, print_result, temporary_schema, timed
from domain.pipeline import PublishPipeline
from domain.plan import PlanEntry
from infrastructure.postgres.database import Database
from infrastructure.postgres.recorder import PublishdApplicationRecorder

ENTRIES = int(os.environ.get("BENCH_ENTRIES", "20000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
BATCH = 100


class PublishdApplication(Application[UUID]):
    """Stands in for the app's single Application (same table naming)."""


def plan(entries: int) -> PublishPipeline:
    """A pipeline with a plan of ``entries`` creates, each event about 500 bytes."""
    pipeline = PublishPipeline(
        pipeline_id=str(uuid4()),
        workspace_id=str(uuid4()),
        user="bench",
        main_version=1,
        draft_version=2,
        phases=[{"phase": "create", "entries": entries}],
    )
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4
    pipeline.plan_entries(
        [
            PlanEntry(
                path=f"articles/article-{i:05d}.json",
                phase="create",
                operation={
                    "type": "create",
                    "folder": "articles",
                    "fields": {
                        "title": f"Article {i}",
                        "slug": f"article-{i:05d}",
                        "author": "@authors/jane-doe.json",
                        "body": body,
                    },
                },
                depends_on=("create:authors/jane-doe.json",),
            )
            for i in range(entries)
        ]
    )
    return pipeline


def save_once(app: PublishdApplication, database: Database, schema: str) -> tuple[float, Any]:
    pipeline = plan(ENTRIES)
    seconds, recordings = timed(lambda: app.save(pipeline))
    ids = [r.notification.id for r in recordings]
    recorder = app.recorder
    assert isinstance(recorder, PublishdApplicationRecorder)
    with database.connect() as conn:
        stored = conn.execute(
            sql.SQL(
                "SELECT count(*), min(notification_id), max(notification_id) FROM {}.{} "
                "WHERE originator_id = %s"
            ).format(sql.Identifier(schema), sql.Identifier(recorder.events_table_name)),
            (pipeline.id,),
        ).fetchone()
    atomic = (
        stored == (len(recordings), ids[0], ids[-1])
        and ids == list(range(ids[0], ids[0] + len(ids)))
        and len(recordings) == ENTRIES + 1
    )
    return seconds, (recordings, atomic)


def insert_only(app: PublishdApplication) -> float:
    events = plan(ENTRIES).collect_events()
    stored = [app.mapper.to_stored_event(e) for e in events]
    seconds, _ = timed(lambda: app.recorder.insert_events(stored))
    return seconds


BASELINE_DDL = (
    "CREATE TABLE {}.baseline (originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
    "topic text, state bytea, notification_id bigserial, "
    "PRIMARY KEY (originator_id, originator_version)); "
    "CREATE UNIQUE INDEX ON {}.baseline (notification_id)"
)


def baseline(database: Database, schema: str, rows: list[StoredEvent], multi_row: bool) -> float:
    """Plain inserts of ``rows`` in batches of 100, one transaction per batch."""
    table = sql.SQL("{}.baseline").format(sql.Identifier(schema))
    columns = sql.SQL("(originator_id, originator_version, topic, state)")
    one = sql.SQL("(%s, %s, %s, %s)")
    single = sql.SQL("INSERT INTO {} {} VALUES {}").format(table, columns, one)
    params = [(r.originator_id, r.originator_version, r.topic, r.state) for r in rows]
    batches = [params[i : i + BATCH] for i in range(0, len(params), BATCH)]
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(table))

        def run() -> None:
            with conn.cursor() as cur:
                for batch in batches:
                    with conn.transaction():
                        if multi_row:
                            values = sql.SQL(", ").join([one] * len(batch))
                            statement = sql.SQL("INSERT INTO {} {} VALUES {}").format(
                                table, columns, values
                            )
                            cur.execute(statement, [v for row in batch for v in row])
                        else:
                            cur.executemany(single, batch)

        seconds, _ = timed(run)
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        assert count == (len(rows),), count
    return seconds


def _figure(label: str, seconds: list[float], rate: float, unit: str) -> None:
    runs = ", ".join(f"{s:.3f}" for s in seconds)
    print(f"{label + ':':<27}[{runs}] s -> {rate:,.0f} {unit}/s")


def main() -> None:
    database = database_from_env()
    with temporary_schema(database, "bench_es") as schema:
        env = {**database.eventsourcing_env(schema), "AGGREGATE_CACHE_MAXSIZE": "1000"}
        app = PublishdApplication(env=env)
        try:
            saves, atomic, rows = [], True, []
            for _ in range(REPEATS):
                seconds, (recordings, ok) = save_once(app, database, schema)
                saves.append(seconds)
                atomic = atomic and ok
                rows = [r.notification for r in recordings]
            inserts = [insert_only(app) for _ in range(REPEATS)]
        finally:
            app.close()
        with database.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL(BASELINE_DDL).format(sql.Identifier(schema), sql.Identifier(schema))
            )
        many = [baseline(database, schema, rows, multi_row=False) for _ in range(REPEATS)]
        multi = [baseline(database, schema, rows, multi_row=True) for _ in range(REPEATS)]

    events = len(rows)
    mean_bytes = sum(len(r.state) for r in rows) / events
    save_rate = events / median(saves)
    insert_rate = events / median(inserts)
    many_rate = events / median(many)
    multi_rate = events / median(multi)
    base_rate, base_kind = max((many_rate, "executemany"), (multi_rate, "multi-row INSERT"))
    print(f"events per save: {events} (state {mean_bytes:.0f} bytes on average)")
    _figure("save() of one plan", saves, save_rate, "events")
    _figure("insert_events() alone", inserts, insert_rate, "events")
    _figure("baseline executemany", many, many_rate, "rows")
    _figure("baseline multi-row INSERT", multi, multi_rate, "rows")
    print(f"baseline used: {base_kind}, batches of {BATCH}, one transaction per batch")
    print_result(
        events=events,
        atomic=atomic,
        events_per_s=round(save_rate),
        baseline_rows_per_s=round(base_rate),
        ratio=round(save_rate / base_rate, 2),
    )


if __name__ == "__main__":
    main()
