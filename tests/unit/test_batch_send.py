"""Sending one batch call: refused items stand alone, the rest publish, in few requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from application.calls import RecordIds, send
from application.connector import (
    Connector,
    EntryRejected,
    ItemOutcome,
    PreconditionFailed,
    Record,
    RecordPage,
    RecordUpdate,
)
from domain.calls import BatchLimits, group_calls
from domain.entries import PipelineEntry
from domain.plan import Phase


class BulkService(Connector):
    """All or nothing per request, like Webflow and the sandbox: one bad item refuses it."""

    batch_limits = BatchLimits(create=100, update=100, delete=100)

    def __init__(self, *, names_index: bool = True) -> None:
        self.names_index = names_index
        self.requests: list[tuple[str, int]] = []
        self.records: dict[str, Record] = {}
        self.applied: dict[str, list[Record]] = {}
        """Idempotency key -> the answer it got: a repeated key replays it."""

    async def create(self, folder: str, fields: Any, idempotency_key: str) -> Record:
        [outcome] = await self.create_many(folder, [fields], idempotency_key)
        assert isinstance(outcome, Record)
        return outcome

    async def create_many(
        self, folder: str, items: Sequence[Any], idempotency_key: str
    ) -> list[ItemOutcome]:
        self.requests.append((idempotency_key, len(items)))
        if self.creates_idempotently and idempotency_key in self.applied:
            return list(self.applied[idempotency_key])
        for index, fields in enumerate(items):
            if fields.get("title", "").startswith("bad"):
                message = f"items[{index}]: title {fields['title']!r} is not allowed"
                raise EntryRejected(message, status=400, index=index if self.names_index else None)
        made = []
        for fields in items:
            record = Record(f"r{len(self.records)}", dict(fields), {"lastUpdated": "v1"})
            self.records[record.id] = record
            made.append(record)
        self.applied[idempotency_key] = made
        return list(made)

    async def update(self, folder: str, record_id: str, fields: Any, key: str, **kw: Any) -> Record:
        [outcome] = await self.update_many(
            folder, [RecordUpdate(record_id, fields, kw.get("if_match"))], key
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def update_many(
        self, folder: str, items: Sequence[RecordUpdate], idempotency_key: str
    ) -> list[ItemOutcome]:
        self.requests.append((idempotency_key, len(items)))
        for index, item in enumerate(items):
            current = self.records[item.record_id]
            if item.if_match is not None and item.if_match != current.computed["lastUpdated"]:
                raise PreconditionFailed("changed", status=412, index=index)
        out: list[ItemOutcome] = []
        for item in items:
            old = self.records[item.record_id]
            version = f"v{int(str(old.computed['lastUpdated'])[1:]) + 1}"
            new = Record(old.id, {**old.field_data, **item.fields}, {"lastUpdated": version})
            self.records[old.id] = new
            out.append(new)
        return out

    async def delete_many(self, folder: str, record_ids: Sequence[str], key: str) -> None:
        raise NotImplementedError

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        raise NotImplementedError

    async def read(self, folder: str, record_id: str) -> Record | None:
        return self.records.get(record_id)


def creates(titles: list[str]) -> dict[str, PipelineEntry]:
    entries = {}
    for n, title in enumerate(titles):
        op = {"type": "create", "folder": "books", "fields": {"title": title}}
        entry = PipelineEntry(f"books/b{n:03}.json", Phase.CREATE, op, [], [], {})
        entries[entry.key] = entry
    return entries


def send_all(service: BulkService, entries: dict[str, PipelineEntry], pipeline: str) -> list[Any]:
    [[call]] = group_calls(pipeline, 0, Phase.CREATE, entries.values(), service.batch_limits)

    async def go() -> list[Any]:
        return await send(service, call, entries, RecordIds({}))

    return asyncio.run(go())


def test_a_bad_item_named_by_the_service_fails_alone_and_the_rest_go_in_one_more_request() -> None:
    titles = [f"t{n}" for n in range(50)]
    titles[7] = titles[31] = "bad title"
    service = BulkService()
    outcomes = send_all(service, creates(titles), str(uuid.uuid4()))

    failed = {o.key for o in outcomes if o.error is not None}
    assert failed == {"create:books/b007.json", "create:books/b031.json"}
    assert all("is not allowed" in o.error.message for o in outcomes if o.error)
    assert all(o.error.index is None for o in outcomes if o.error)  # an item's own error now
    assert len(service.records) == 48 and len(outcomes) == 50
    assert [size for _, size in service.requests] == [50, 49, 48]


def test_without_an_index_the_batch_is_halved_until_the_bad_item_stands_alone() -> None:
    titles = [f"t{n}" for n in range(16)]
    titles[5] = "bad title"
    service = BulkService(names_index=False)
    outcomes = send_all(service, creates(titles), str(uuid.uuid4()))

    assert [o.key for o in outcomes if o.error] == ["create:books/b005.json"]
    assert len(service.records) == 15
    assert [size for _, size in service.requests] == [16, 8, 4, 4, 2, 1, 1, 2, 8]


def test_sending_the_same_call_again_splits_it_the_same_way_and_creates_nothing_twice() -> None:
    titles = [f"t{n}" for n in range(20)]
    titles[3] = "bad title"
    service = BulkService()
    pipeline = str(uuid.uuid4())
    first = send_all(service, creates(titles), pipeline)
    keys = [key for key, _ in service.requests]
    again = send_all(service, creates(titles), pipeline)  # a resumed run re-sends its intent

    assert [key for key, _ in service.requests[len(keys) :]] == keys
    assert len(service.records) == 19
    assert [(o.key, o.record) for o in again] == [(o.key, o.record) for o in first]


def test_an_item_changed_upstream_is_checked_alone_and_the_batch_goes_on() -> None:
    service = BulkService()
    service.records = {
        f"r{n}": Record(f"r{n}", {"title": f"t{n}", "body": "x"}, {"lastUpdated": "v1"})
        for n in range(5)
    }
    service.records["r2"] = Record("r2", {"title": "t2", "body": "theirs"}, {"lastUpdated": "v2"})
    entries = {}
    main = {}
    for n in range(5):
        op = {"type": "update", "folder": "books", "record_id": f"r{n}", "fields": {"title": "T"}}
        entry = PipelineEntry(f"books/b{n}.json", Phase.EDIT, op, [], [], {"title": f"t{n}"})
        entries[entry.key] = entry
        main[entry.path] = {"id": f"r{n}", "title": f"t{n}", "body": "x", "lastUpdated": "v1"}
    [[call]] = group_calls("p", 0, Phase.EDIT, entries.values(), service.batch_limits)

    async def go() -> list[Any]:
        return await send(service, call, entries, RecordIds({}), main)

    outcomes = asyncio.run(go())

    assert all(o.error is None for o in outcomes)  # body changed upstream, title did not
    assert {r.field_data["title"] for r in service.records.values()} == {"T"}
    assert service.records["r2"].field_data["body"] == "theirs"


class NoKeysService(BulkService):
    """A service without idempotency keys (Webflow): a resent create must look first."""

    creates_idempotently = False

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[int] = []

    async def find_created(self, folder: str, items: Sequence[Any]) -> list[Record | None]:
        self.looked_up.append(len(items))
        by_title = {r.field_data["title"]: r for r in self.records.values()}
        return [by_title.get(fields["title"]) for fields in items]


def test_a_resent_create_on_a_service_without_keys_sends_only_what_does_not_exist() -> None:
    service = NoKeysService()
    entries = creates([f"t{n}" for n in range(10)])
    [[call]] = group_calls("p", 0, Phase.CREATE, entries.values(), service.batch_limits)
    first = asyncio.run(send(service, call, entries, RecordIds({})))  # answered: not a resend
    assert service.looked_up == [] and len(service.records) == 10
    for n in range(5, 10):  # the second half was never applied, as if its answer was lost
        del service.records[first[n].record.id]
    call.resent = True
    again = asyncio.run(send(service, call, entries, RecordIds({})))

    assert service.looked_up == [10]
    assert len(service.records) == 10  # five found, five created: none twice
    assert {o.record.id for o in again[:5]} == {o.record.id for o in first[:5]}
    assert [size for _, size in service.requests] == [10, 5]


class NoVersionsService(BulkService):
    """No conditional writes (Webflow, Airtable): an upstream check reads the records."""

    version_field = None

    def __init__(self) -> None:
        super().__init__()
        self.bulk_reads: list[int] = []

    async def read_many(self, folder: str, record_ids: Sequence[str]) -> dict[str, Record]:
        self.bulk_reads.append(len(record_ids))
        return {rid: self.records[rid] for rid in record_ids if rid in self.records}


def test_without_conditional_writes_a_batch_is_read_once_and_written_once() -> None:
    service = NoVersionsService()
    service.records = {
        f"r{n}": Record(f"r{n}", {"title": f"t{n}"}, {"lastUpdated": "v1"}) for n in range(5)
    }
    service.records["r3"] = Record("r3", {"title": "theirs"}, {"lastUpdated": "v2"})
    entries, main = {}, {}
    for n in range(6):  # r5 is gone upstream
        op = {"type": "update", "folder": "books", "record_id": f"r{n}", "fields": {"title": "T"}}
        entry = PipelineEntry(f"books/b{n}.json", Phase.EDIT, op, [], [], {"title": f"t{n}"})
        entries[entry.key] = entry
        main[entry.path] = {"id": f"r{n}", "title": f"t{n}"}
    [[call]] = group_calls("p", 0, Phase.EDIT, entries.values(), service.batch_limits)

    outcomes = {o.key: o for o in asyncio.run(send(service, call, entries, RecordIds({}), main))}

    assert service.bulk_reads == [6]
    assert [size for _, size in service.requests] == [4]  # one update of the four unchanged
    assert outcomes["edit:books/b3.json"].error.code == "changed_upstream"
    assert "no longer exists" in outcomes["edit:books/b5.json"].error.message
    assert service.records["r3"].field_data["title"] == "theirs"
    assert {service.records[f"r{n}"].field_data["title"] for n in (0, 1, 2, 4)} == {"T"}
