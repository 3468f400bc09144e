"""Calls per publish: a large mixed draft, batched, against a service at its request rate.

``python -m bench.calls [--service sandbox|webflow|airtable] [--requests-per-minute N]``
(needs ``PUBLISHD_DATABASE_URL``; works in its own schema and drops it). The
sandbox and the Webflow fake allow 60 requests per minute (``--requests-per-minute``
changes it), the Airtable fake 5 per second with 30 s of refusals after an
excess (``bench/services.py``: how each is seeded, limited and counted).

Issue #14: a service that allows one request a second makes a publish of
1,000 records cost a quarter of an hour if each record is a request, and
seconds if a request carries a hundred. What a user waits for is requests, so
this bench counts them.

Main: 400 authors and 400 books (``book.author`` -> author), seeded into the
service and pulled. The draft: 500 new authors and 550 new books, each new book
pointing at a new author and 50 new authors pointing back at their book
(``favourite_book``: 50 two-record cycles); 250 retitled books and 50 renamed
authors; 100 deleted authors that 100 books still point at (the planner adds
reference-clearing edits, 50 of them on retitled books). The limit is turned
on only after that setup (``PUT /_admin/faults``, which also starts a fresh
window), and the workspace's connector learns the rate then too, so both
windows and the service's request count hold the run alone.

- ``calls``: requests the service saw during the run. When nothing fails it
  equals the plan's ``estimated_calls`` (``domain.calls.calls_per_phase``),
  plus ``unplanned_calls``: the reads of the upstream check on a service
  without conditional writes (below), which no plan can count in advance;
- ``calls_lower_bound``: over each phase and folder, ⌈entries / batch limit⌉,
  counting in the backfill only the cycle fields of new records (an edit's
  backfill is a request a better plan might fold in, not a floor);
- ``per_entry_calls``: what the same draft cost before batching: a request per
  edit and per create, one per delete page, and a backfill per new or edited
  file pointing at any new record (every new->new pointer was stripped from
  its create then). The same formula for every service, Airtable included:
  its limit of 10 records a request caps the ratio near 13, reported as is;
- ``wall_s``: ``request_run`` to the terminal state; ``responses_429``: the
  service's ``rate_limited`` count.

Targets: calls ≤ 1.2 x lower bound, per_entry_calls / calls ≥ 20, no 429, and
wall_s ≤ 1.3 x calls x window / requests per window (no slower than pacing
every call evenly); the exit status is 1 when one is missed. The service's
records are checked afterwards: every create applied once, every delete gone.

``--on-upstream-change`` is the plan's policy (``fail`` by default, as in
publishd). Webflow and Airtable have no conditional writes, so under ``fail``
the records a batch of updates writes are read first (``Connector.read_many``:
Webflow lists the collection when that is fewer requests, Airtable reads 50
records a request through ``filterByFormula``) and the unchanged ones go out
in one request. ``overwrite`` measures the batches alone; the bench prints how
many updates were checked.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.common import database_from_env, print_result, temporary_schema
from bench.services import SERVICES, Service, service
from domain.calls import BatchLimits, calls_per_phase, group_calls
from domain.connector_config import batch_limits
from domain.draft import Draft
from domain.json_types import JsonObject
from domain.pipeline import PublishPipeline
from domain.plan import DELETE_PAGE_SIZE, PHASES, Phase, UpstreamPolicy
from domain.pointers import ref_strings_by_field, target_of
from domain.schema import FolderSchema
from infrastructure.settings import Settings
from interfaces.bootstrap import Runtime

WORKSPACE = "bench-calls"
USER = "alice"
DRAFT_SAVE = 500
"""Draft files per save while setting up (well under the ~1,100-event save trap)."""
SETUP_TIMEOUT_S = 120.0
KINDS = {Phase.EDIT: "update", Phase.CREATE: "create", Phase.DELETE: "delete"}
"""The request kind of each phase's entries (backfills are updates too)."""


@dataclass(frozen=True)
class Shape:
    """Main and the draft (see the module docstring); book ``b`` points at author ``b``."""

    authors: int = 400
    books: int = 400
    new_authors: int = 500
    new_books: int = 550
    cycles: int = 50
    retitled_books: range = range(100, 350)
    renamed_authors: range = range(0, 50)
    deleted_authors: range = range(300, 400)


@dataclass
class Row:
    """One phase and folder of the plan: its entries and what each way of sending costs."""

    entries: int = 0
    calls: int = 0
    lower_bound: int = 0
    per_entry: int = 0


@dataclass
class Table:
    """The plan's rows, keyed by phase and folder (a row may cost only per entry)."""

    rows: dict[tuple[Phase, str], Row] = field(default_factory=dict)

    def row(self, phase: Phase, folder: str) -> Row:
        return self.rows.setdefault((phase, folder), Row())

    def total(self, figure: str) -> int:
        return sum(getattr(row, figure) for row in self.rows.values())

    def show(self) -> None:
        print(f"{'phase':<10}{'folder':<10}{'entries':>8}{'calls':>7}{'lower':>7}{'per entry':>11}")
        order = {phase: index for index, phase in enumerate(PHASES)}
        for (phase, folder), row in sorted(
            self.rows.items(), key=lambda i: (order[i[0][0]], i[0][1])
        ):
            print(
                f"{phase:<10}{folder:<10}{row.entries:>8}{row.calls:>7}"
                f"{row.lower_bound:>7}{row.per_entry:>11}"
            )
        figures = [self.total(f) for f in ("entries", "calls", "lower_bound", "per_entry")]
        print(f"{'total':<20}{figures[0]:>8}{figures[1]:>7}{figures[2]:>7}{figures[3]:>11}")


def pull_main(runtime: Runtime) -> None:
    pull = runtime.app.start_pull(WORKSPACE, None)

    async def go() -> None:
        try:
            run = runtime.worker("bench-pull").run_pull(pull.pull_id)
            done = await asyncio.wait_for(run, SETUP_TIMEOUT_S)
        finally:
            await runtime.aclose_connectors()
        if done is None or done.state != "completed":
            raise SystemExit(f"the pull of main ended {None if done is None else done.state}")

    asyncio.run(go())


def draft_changes(runtime: Runtime, shape: Shape, service: Service) -> dict[str, JsonObject | None]:
    """The draft of the module docstring, path -> content (None: deleted)."""
    changes: dict[str, JsonObject | None] = {}
    for j in range(shape.new_authors):
        favourite = f"books/new-book-{j}.json" if j < shape.cycles else None
        changes[f"authors/new-author-{j}.json"] = service.author(j, favourite)
    for i in range(shape.new_books):
        author = f"authors/new-author-{i % shape.new_authors}.json"
        changes[f"books/new-book-{i}.json"] = service.book(i, author)
    edited = {f"books/book-{b}.json": "title" for b in shape.retitled_books}
    edited |= {f"authors/author-{a}.json": "name" for a in shape.renamed_authors}
    runtime.app.catch_up()
    main = runtime.views.main_contents(WORKSPACE, edited)
    for path, key in edited.items():
        changes[path] = {**main[path], key: f"{main[path][key]} (revised)"}
    for a in shape.deleted_authors:
        changes[f"authors/author-{a}.json"] = None
    return changes


def write_draft(runtime: Runtime, changes: dict[str, JsonObject | None]) -> None:
    draft = Draft(workspace_id=WORKSPACE, user=USER)
    items = list(changes.items())
    for start in range(0, len(items), DRAFT_SAVE):
        for path, content in items[start : start + DRAFT_SAVE]:
            if content is None:
                draft.delete_file(path, on_main=True)
            else:
                draft.write_file(path, content)
        runtime.app.save_all(draft)


def phase_table(
    pipeline: PublishPipeline,
    changes: dict[str, JsonObject | None],
    schemas: dict[str, FolderSchema],
    limits: BatchLimits,
) -> Table:
    """Entries, calls, the lower bound and the per-entry cost, per phase and folder."""
    table = Table()
    for phase in pipeline.phases:
        entries = pipeline.entries_of(phase)
        for wave in group_calls(pipeline.pipeline_id, 0, phase, entries, limits):
            for call in wave:
                table.row(phase, call.folder).calls += 1
        bounded: Counter[str] = Counter()
        for entry in entries:
            folder = str(entry.operation["folder"])
            table.row(phase, folder).entries += 1
            if phase != Phase.BACKFILL or entry.operation.get("record_id") is None:
                bounded[folder] += 1
            if phase in (Phase.EDIT, Phase.CREATE):
                table.row(phase, folder).per_entry += 1
        for folder, n in bounded.items():
            kind = KINDS.get(phase, "update")
            table.row(phase, folder).lower_bound = math.ceil(n / limits.of(kind))
            if phase == Phase.DELETE:
                table.row(phase, folder).per_entry = math.ceil(n / DELETE_PAGE_SIZE)
    new = {e.path for e in pipeline.entries_of(Phase.CREATE)}
    for path in _pointing_at(new, changes, schemas):
        table.row(Phase.BACKFILL, path.rsplit("/", 1)[0]).per_entry += 1
    return table


def _pointing_at(
    new: set[str], changes: dict[str, JsonObject | None], schemas: dict[str, FolderSchema]
) -> Iterable[str]:
    """Draft files (new or edited) with a pointer to a new record: a backfill each, unbatched."""
    for path, content in changes.items():
        if content is None:
            continue
        unsent = schemas[path.rsplit("/", 1)[0]].unsent_fields
        raws = (raw for refs in ref_strings_by_field(content, unsent).values() for raw in refs)
        if any((target := target_of(raw)) is not None and target.path in new for raw in raws):
            yield path


def run(runtime: Runtime, pipeline_id: str, deadline_s: float) -> float:
    """``request_run`` -> terminal state, in seconds; SystemExit unless it completed in time."""
    worker = runtime.worker("bench-calls")

    async def go() -> str | None:
        try:
            return await asyncio.wait_for(worker.run_one(pipeline_id), deadline_s)
        finally:
            await runtime.aclose_connectors()

    started = time.perf_counter()
    runtime.app.request_run(pipeline_id)
    try:
        state = asyncio.run(go())
    except TimeoutError:
        counts = runtime.app.pipeline(pipeline_id).counts()
        raise SystemExit(f"the run did not end within {deadline_s:.0f} s: {counts}") from None
    elapsed = time.perf_counter() - started
    if state != "completed":
        counts = runtime.app.pipeline(pipeline_id).counts()
        raise SystemExit(f"the run ended {state}: {counts}")
    return elapsed


def guarded_updates(pipeline: PublishPipeline, policy: UpstreamPolicy, target: Service) -> int:
    """Updates of existing records the run reads first and sends one by one.

    With ``on_upstream_change=fail`` and no conditional writes on the service,
    each such update is checked against the service's copy on its own
    (``application.upstream``): a read and a write, outside every batch.
    """
    if policy != UpstreamPolicy.FAIL or target.conditional_writes:
        return 0
    return sum(
        1
        for entry in pipeline.entries.values()
        if entry.operation.get("type") == "update" and entry.operation.get("record_id")
    )


def check_service(service: Service, shape: Shape) -> None:
    """The service holds what the draft says: every create applied once, every delete gone."""
    expected = {
        "authors": shape.authors - len(shape.deleted_authors) + shape.new_authors,
        "books": shape.books + shape.new_books,
    }
    totals = service.totals()
    for name, count in expected.items():
        if totals[name] != count:
            raise SystemExit(f"{service.name} holds {totals[name]} {name}, not {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", choices=sorted(SERVICES), default="sandbox")
    parser.add_argument(
        "--requests-per-minute", type=int, default=None, help="sandbox, webflow: 60 by default"
    )
    parser.add_argument(
        "--on-upstream-change", choices=[p.value for p in UpstreamPolicy], default="fail"
    )
    args = parser.parse_args()
    target, shape = service(args.service, args.requests_per_minute), Shape()
    rate, policy = target.rate, UpstreamPolicy(args.on_upstream_change)

    database = database_from_env()
    with temporary_schema(database, "bench_calls") as schema, target.running():
        runtime = Runtime.build(Settings(database_url=database.conninfo, db_schema=schema))
        stop = threading.Event()
        projections = threading.Thread(target=runtime.run_projections, args=(stop,))
        projections.start()
        try:
            connector = target.connector(setup=True)
            limits = batch_limits(connector)
            target.seed(shape.authors, shape.books)
            app = runtime.app
            app.create_workspace(WORKSPACE, connector)
            for folder, folder_schema in target.schemas.items():
                app.register_schema(WORKSPACE, folder, folder_schema)
            pull_main(runtime)
            app.change_connector(WORKSPACE, target.connector(setup=False))
            changes = draft_changes(runtime, shape, target)
            write_draft(runtime, changes)
            pipeline = app.plan(WORKSPACE, USER, on_upstream_change=policy)
            schemas = app.workspace(WORKSPACE).folder_schemas()
            table = phase_table(pipeline, changes, schemas, limits)
            per_phase = calls_per_phase(pipeline.pipeline_id, pipeline.entries.values(), limits)
            estimated = sum(per_phase.values())
            guarded = guarded_updates(pipeline, policy, target)

            target.limit(True)
            target.reset_stats()
            paced_estimate_s = (estimated + 2 * guarded) * rate.window_s / rate.requests
            wall_s = run(runtime, pipeline.pipeline_id, 60 + 3 * paced_estimate_s)
            counts = target.counts()
            target.limit(False)
            check_service(target, shape)
        finally:
            stop.set()
            projections.join(timeout=30)
            runtime.close()

    calls, responses_429 = counts.requests, counts.rate_limited
    unplanned = calls - estimated
    lower, per_entry = table.total("lower_bound"), table.total("per_entry")
    paced_s = calls * rate.window_s / rate.requests
    targets = {
        "calls == estimated_calls (+ upstream-check reads)": (
            calls == estimated if not guarded else calls >= estimated
        ),
        "calls <= 1.2 x calls_lower_bound": calls <= 1.2 * lower,
        "per_entry_calls / calls >= 20": per_entry >= 20 * calls,
        "responses_429 == 0": responses_429 == 0,
        f"wall_s <= 1.3 x {paced_s:.0f} s": wall_s <= 1.3 * paced_s,
    }
    table.show()
    print(f"calls: {calls} sent, {estimated} estimated by the plan, {lower} lower bound")
    if unplanned:
        print(f"{unplanned} requests the plan does not count (reads of the upstream check)")
    print(f"calls / lower bound {calls / lower:.2f}; per-entry / calls {per_entry / calls:.1f}")
    print(f"wall {wall_s:.2f} s at {rate} ({wall_s / paced_s:.2f} of {paced_s:.0f} s paced)")
    print(f"{target.name}: {responses_429} responses 429, {counts.duplicates} duplicates")
    if guarded:
        print(
            f"{guarded} updates of existing records were checked against the service's copy "
            f"({target.name} has no conditional writes, on_upstream_change={policy}): "
            f"their records read in bulk before each batch"
        )
    for name, met in targets.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")
    print_result(
        service=target.name,
        on_upstream_change=str(policy),
        entries=len(pipeline.entries),
        calls=calls,
        calls_lower_bound=lower,
        per_entry_calls=per_entry,
        wall_s=round(wall_s, 2),
        requests_per_minute=round(rate.per_minute),
        rate=str(rate),
        responses_429=responses_429,
        estimated_calls=estimated,
        unplanned_calls=unplanned,
        targets_met=all(targets.values()),
    )
    if not all(targets.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
