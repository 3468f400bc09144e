"""The in-memory connector and ``TimedConnector`` keep the port's read and conditional update.

Unit tests of the run and of pulls stand the in-memory connector in for the
service, so it must refuse a stale ``if_match`` exactly as the sandbox does;
and the metrics wrapper sits in front of every real connector, so it must
pass ``if_match`` and ``version_field`` through and time reads.
"""

from __future__ import annotations

import asyncio

import pytest

from application.app import PublishdApplication
from application.connector import PreconditionFailed, Record
from interfaces.timed_connector import CONNECTOR_LATENCY, TimedConnector
from tests.support.connectors import CheckingConnector


def in_memory() -> CheckingConnector:
    return CheckingConnector(PublishdApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}))


def version(record: Record | None) -> object:
    assert record is not None
    return record.computed["lastUpdated"]


def test_every_write_gives_a_new_version_and_read_sees_it() -> None:
    async def scenario() -> list[object]:
        c = in_memory()
        c.seed("books", "b1", {"title": "T"})
        seeded = await c.read("books", "b1")
        created = await c.create("books", {"title": "U"}, "k1")
        updated = await c.update("books", "b1", {"title": "T2"}, "k2")
        c.seed("books", "b1", {"title": "edited in the service"})
        edited = await c.read("books", "b1")
        assert edited is not None and edited.field_data == {"title": "edited in the service"}
        assert await c.read("books", "nope") is None
        assert await c.read("ghosts", "b1") is None
        return [version(seeded), version(created), version(updated), version(edited)]

    versions = asyncio.run(scenario())
    assert len(set(versions)) == len(versions)


def test_a_stale_if_match_is_refused_and_writes_nothing() -> None:
    async def scenario() -> None:
        c = in_memory()
        c.seed("books", "b1", {"title": "T", "year": 1})
        main = await c.read("books", "b1")
        c.seed("books", "b1", {"title": "Colleague's", "year": 1})
        current = await c.read("books", "b1")
        with pytest.raises(PreconditionFailed) as refused:
            await c.update("books", "b1", {"title": "Mine"}, "k", if_match=str(version(main)))
        assert refused.value.status == 412
        assert refused.value.details == {"lastUpdated": version(current)}
        assert await c.read("books", "b1") == current
        written = await c.update("books", "b1", {"year": 2}, "k", if_match=str(version(current)))
        assert written.field_data == {"title": "Colleague's", "year": 2}
        assert version(written) != version(current)

    asyncio.run(scenario())


def count(operation: str) -> float:
    """Calls observed so far for the in-memory connector's ``operation``."""
    (metric,) = CONNECTOR_LATENCY.collect()
    return sum(
        sample.value
        for sample in metric.samples
        if sample.name.endswith("_count")
        and sample.labels == {"connector": "memory", "operation": operation}
    )


def test_timed_connector_times_reads_and_passes_if_match_through() -> None:
    inner = in_memory()
    inner.seed("books", "b1", {"title": "T"})
    timed = TimedConnector(inner, "memory")
    reads_before, updates_before = count("read"), count("update")

    async def scenario() -> None:
        main = await timed.read("books", "b1")
        assert main == await inner.read("books", "b1")
        inner.seed("books", "b1", {"title": "Colleague's"})
        with pytest.raises(PreconditionFailed):
            await timed.update("books", "b1", {"title": "Mine"}, "k", if_match=str(version(main)))
        assert await timed.read("books", "gone") is None

    asyncio.run(scenario())
    assert timed.version_field == inner.version_field == "lastUpdated"
    assert count("read") - reads_before == 2
    assert count("update") - updates_before == 1  # the refused call is timed too
