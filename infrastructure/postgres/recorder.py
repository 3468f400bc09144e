"""An application recorder that saves any number of events in one transaction.

The stock ``PostgresApplicationRecorder.insert_events`` sends its statements
through a psycopg pipeline. With psycopg 3.3 a single save of more than about
1,100 events never returns, and a plan of 20,000 entries must still be saved
atomically. This recorder keeps the stock contract (one transaction per save,
all or nothing; notification ids issued in the order of the events; a
conflicting ``originator_version`` raises ``IntegrityError`` and writes nothing;
the EXCLUSIVE table lock that makes insert order equal commit order; a NOTIFY on
the table's channel) and changes only how the rows travel:

- up to ``COPY_THRESHOLD`` events: one ``INSERT ... SELECT FROM unnest(...)``
  of four binary arrays, sent right after the lock. Fewest round trips, which
  is what a small save costs.
- more: a binary ``COPY`` into a per-session temporary staging table *before*
  the lock is taken, then one ``INSERT ... SELECT ... ORDER BY n`` under the
  lock. The transfer and parsing of megabytes happen while other writers can
  still commit, so the lock is held only for the insert itself and the commit.
  The staging table's primary key on ``n`` gives the ordered scan without a
  sort (a 20,000 row sort spills past the default ``work_mem``).

Either way the insert is a single statement whose CTE also calls
``pg_notify(channel, max(notification_id))``, so listeners learn the highest
notification id of the transaction without querying, and the lock is not held
for an extra round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresProcessRecorder,
)
from eventsourcing.utils import retry
from psycopg import Connection
from psycopg.errors import DuplicateObject
from psycopg.rows import DictRow, scalar_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from infrastructure.postgres.database import lock_for_ddl

COPY_THRESHOLD = 256
"""Saves larger than this go through COPY and the staging table (measured
crossover of the time the table lock is held: about 200-300 events of ~500
bytes on a local server)."""

_COLUMNS = SQL("originator_id, originator_version, topic, state")


class PublishdApplicationRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` without the pipelined insert."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        **kwargs: Any,
    ) -> None:
        # kwargs pass through, so a process recorder can mix this class in
        # and still receive its tracking_table_name.
        super().__init__(datastore, events_table_name=events_table_name, **kwargs)
        # The statements are built here, not in create_table: a process started
        # with CREATE_TABLE off never calls create_table and must still save.
        self._prepare_statements()

    def create_table(self) -> None:
        """The stock DDL, in one transaction serialised across processes.

        Stock creation runs each ``CREATE TYPE`` in its own transaction and then
        the rest; two processes starting together race on those objects
        ("tuple concurrently updated"). Under one advisory lock the second
        process waits, then finds everything in place.
        """
        with self.datastore.transaction(commit=True) as curs:
            lock_for_ddl(curs.connection)
            for statement in self.sql_create_statements:
                if "CREATE TYPE" in statement.as_string():
                    try:
                        with curs.connection.transaction():  # a savepoint
                            curs.execute(statement, prepare=False)
                    except DuplicateObject:
                        pass
            self._create_table(curs)
        self.datastore.register_type_adapters()

    def _prepare_statements(self) -> None:
        id_type = self.datastore.originator_id_type
        self._originator_ids_are_uuids = id_type == "uuid"
        events_table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        # Temporary tables live in the session's own schema, so one name per
        # originator id type serves every recorder that uses a connection.
        staging = Identifier(f"publishd_staging_{id_type}")
        set_lock_timeout = SQL("SET LOCAL lock_timeout = '{0}s'").format(
            self.datastore.lock_timeout
        )
        lock = SQL("LOCK TABLE {0} IN EXCLUSIVE MODE").format(events_table)

        self._lock_for_unnest = SQL("; ").join([set_lock_timeout, lock])
        self._insert_from_unnest = self._insert_returning_ids(
            events_table,
            SQL(
                "unnest(%b::{0}[], %b::int8[], %b::text[], %b::bytea[]) "
                "WITH ORDINALITY AS u(originator_id, originator_version, topic, state, n)"
            ).format(Identifier(id_type)),
        )

        self._prepare_staging = SQL("; ").join(
            [
                set_lock_timeout,
                # IF NOT EXISTS says "skipping" as a NOTICE on every later save.
                SQL("SET LOCAL client_min_messages = warning"),
                SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {0} ("
                    "n int4 PRIMARY KEY, originator_id {1} NOT NULL, "
                    "originator_version int8 NOT NULL, topic text, state bytea"
                    ") ON COMMIT DELETE ROWS"
                ).format(staging, Identifier(id_type)),
            ]
        )
        self._copy_to_staging = SQL("COPY {0} (n, {1}) FROM STDIN (FORMAT BINARY)").format(
            staging, _COLUMNS
        )
        self._copy_types = ["int4", id_type, "int8", "text", "bytea"]
        self._last_notification_id = SQL(
            "SELECT notification_id FROM {0} WHERE originator_id = %s "
            "ORDER BY originator_version DESC LIMIT 1"
        ).format(events_table)
        self._lock_and_insert_from_staging = SQL("; ").join(
            [lock, self._insert_returning_ids(events_table, staging)]
        )

    def _insert_returning_ids(self, events_table: Composable, source: Composable) -> Composed:
        return SQL(
            "WITH inserted AS ("
            "INSERT INTO {table} ({columns}) "
            "SELECT {columns} FROM {source} ORDER BY n "
            "RETURNING notification_id"
            "), notified AS ("
            "SELECT pg_notify({channel}, max(notification_id)::text) FROM inserted"
            ") "
            "SELECT notification_id FROM inserted, notified ORDER BY notification_id"
        ).format(
            table=events_table,
            columns=_COLUMNS,
            source=source,
            channel=Literal(self.channel_name),
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            # The hook runs first, as in the stock recorder (a process
            # recorder writes its tracking row here).
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return []
            if len(stored_events) > COPY_THRESHOLD:
                ids = self._insert_via_staging(conn, stored_events)
            else:
                ids = self._insert_via_unnest(conn, stored_events)
        if len(ids) != len(stored_events):
            msg = f"Inserted {len(stored_events)} events but got {len(ids)} notification ids"
            raise ProgrammingError(msg)
        return ids

    def last_notification_id(self, originator_id: UUID) -> int:
        """The notification id of the aggregate's latest event (0 if it has none).

        One probe of the primary key (originator_id, originator_version): what a
        read of one aggregate's projections waits for, instead of the global head.
        """
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=scalar_row) as curs:
            curs.execute(self._last_notification_id, (originator_id,), prepare=True)
            found = curs.fetchone()
        return int(found) if found is not None else 0

    def _insert_via_unnest(
        self, conn: Connection[DictRow], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        with conn.cursor(row_factory=scalar_row) as curs:
            curs.execute(self._lock_for_unnest)
            curs.execute(
                self._insert_from_unnest,
                (
                    [self._originator_id(e) for e in stored_events],
                    [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events],
                    [e.state for e in stored_events],
                ),
            )
            return curs.fetchall()

    def _insert_via_staging(
        self, conn: Connection[DictRow], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        with conn.cursor(row_factory=scalar_row) as curs:
            curs.execute(self._prepare_staging)
            with curs.copy(self._copy_to_staging) as copy:
                copy.set_types(self._copy_types)
                for n, e in enumerate(stored_events):
                    copy.write_row(
                        (n, self._originator_id(e), e.originator_version, e.topic, e.state)
                    )
            curs.execute(self._lock_and_insert_from_staging)
            curs.nextset()  # past the LOCK's empty result
            return curs.fetchall()

    def _originator_id(self, stored_event: StoredEvent) -> UUID | str:
        # Binary UUID dumping needs UUID objects; events may carry str ids.
        originator_id = stored_event.originator_id
        if self._originator_ids_are_uuids and not isinstance(originator_id, UUID):
            return UUID(str(originator_id))
        return originator_id


class PublishdProcessRecorder(PublishdApplicationRecorder, PostgresProcessRecorder):
    """The stock process recorder (events + tracking in one transaction) with
    our insert path, so a process application's large save cannot hang either."""
