"""Webhook registrations and deliveries on PostgreSQL, beside the event store.

Registrations hold their secret, so they are kept in a table of their own (like
API tokens) and never become events. Deliveries are *derived* from the
committed terminal events, not written with them: ``derive`` reads the events
after its tracking position and inserts their deliveries and the new position
in one transaction, so each (webhook, event) yields exactly one delivery, and
a delivery's id (uuid5 of both) makes a replay insert nothing twice.

Unlike the projections, these tables are not caches: a delivery's state is the
record of what a receiver was sent, and a rebuild must never send it again.
So this is a process of its own, outside ``projections rebuild``.

- Derivation trails the pipeline and pull status projections: it takes only
  events they have applied, so a receiver that asks ``GET /pipelines/{id}`` on
  receipt finds it ended, and the payload's workspace and counts come from
  their rows.
- A registration records the event store's head when it is made; events up to
  it get no delivery for it. Registering takes the tracking row's lock, as
  ``derive`` does, so the two cannot interleave and miss an event between them.
- Sending: ``claim`` leases due deliveries with ``FOR UPDATE SKIP LOCKED``
  (any number of processes deliver side by side); ``record`` keeps an outcome
  only from the lease's holder.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from application.projections.events import decode
from application.projections.pipeline_status import counts_dict
from application.webhooks import Delivery, DueDelivery, Webhook, WebhookStore
from domain.json_types import JsonObject
from domain.webhooks import TERMINAL_EVENT_NAMES, delivery_id, payload, webhook_event
from infrastructure.postgres.availability import Availability, guarded_pool
from infrastructure.postgres.database import lock_for_ddl
from infrastructure.postgres.projections.tables import ProjectionTables

PAGE = 5000
"""Notifications one derivation transaction reads at most."""
TRACKED_BY = ("pipeline_status", "pull_status")
"""The projections whose rows a delivery's payload is read from (and that it trails)."""
TRACKING_NAME = "deliveries"

_DDL: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS {webhooks} ("
    " id uuid PRIMARY KEY, workspace text NOT NULL, url text NOT NULL,"
    " events text[] NOT NULL, secret text NOT NULL, created_at timestamptz NOT NULL,"
    " registered_after bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS webhooks_ws_idx ON {webhooks} (workspace, created_at)",
    "CREATE TABLE IF NOT EXISTS {webhook_deliveries} ("
    " id uuid PRIMARY KEY,"
    " webhook_id uuid NOT NULL REFERENCES {webhooks} (id) ON DELETE CASCADE,"
    " notification_id bigint NOT NULL, event text NOT NULL, body text NOT NULL,"
    " state text NOT NULL, attempts int NOT NULL DEFAULT 0, last_status int, last_error text,"
    " due_since timestamptz NOT NULL, next_attempt_at timestamptz,"
    " lease_owner text, lease_until timestamptz, finished_at timestamptz)",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx"
    " ON {webhook_deliveries} (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook_idx"
    " ON {webhook_deliveries} (webhook_id, notification_id DESC)",
    "CREATE TABLE IF NOT EXISTS {webhook_tracking} ("
    " name text PRIMARY KEY, position bigint NOT NULL)",
    "INSERT INTO {webhook_tracking} VALUES ('" + TRACKING_NAME + "', 0) ON CONFLICT DO NOTHING",
)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class PostgresWebhookStore(WebhookStore):
    def __init__(
        self,
        conninfo: str,
        schema: str,
        events_table: str,
        *,
        pool_size: int = 4,
        availability: Availability | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._pool = guarded_pool(
            conninfo, availability, max_size=pool_size, timeout=timeout, open=False
        )
        self.projections = ProjectionTables(schema, "", events_table)
        self._names: dict[str, sql.Composable] = {
            name: sql.Identifier(schema, name)
            for name in ("webhooks", "webhook_deliveries", "webhook_tracking")
        }
        self._names.update(
            events=sql.Identifier(schema, events_table),
            projection_tracking=self.projections.table("projection_tracking"),
            pipeline_status=self.projections.table("pipeline_status"),
            pull_status=self.projections.table("pull_status"),
        )

    def q(self, template: LiteralString) -> sql.Composed:
        return sql.SQL(template).format(**self._names)

    def open(self) -> None:
        self._pool.open(wait=True)

    def close(self) -> None:
        self._pool.close()

    def create_tables(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            lock_for_ddl(conn)
            for statement in _DDL:
                conn.execute(self.q(statement))

    # --- registrations ------------------------------------------------------------
    def register(self, webhook: Webhook, secret: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            # Serialised with derive: see the module's docstring.
            conn.execute(
                self.q("SELECT 1 FROM {webhook_tracking} WHERE name = %s FOR UPDATE"),
                (TRACKING_NAME,),
            )
            conn.execute(
                self.q(
                    "INSERT INTO {webhooks} (id, workspace, url, events, secret, created_at,"
                    " registered_after) SELECT %s, %s, %s, %s, %s, %s,"
                    " COALESCE((SELECT max(notification_id) FROM {events}), 0)"
                ),
                (
                    webhook.id,
                    webhook.workspace,
                    webhook.url,
                    webhook.events,
                    secret,
                    webhook.created_at,
                ),
            )

    def webhooks(self, workspace: str) -> list[Webhook]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.q(
                    "SELECT id::text, workspace, url, events, created_at FROM {webhooks}"
                    " WHERE workspace = %s ORDER BY created_at, id"
                ),
                (workspace,),
            ).fetchall()
        return [Webhook(r[0], r[1], r[2], list(r[3]), r[4]) for r in rows]

    def delete(self, workspace: str, webhook_id: str) -> bool:
        key = _uuid(webhook_id)
        if key is None:
            return False
        with self._pool.connection() as conn:
            cursor = conn.execute(
                self.q("DELETE FROM {webhooks} WHERE id = %s AND workspace = %s"),
                (key, workspace),
            )
            return bool(cursor.rowcount > 0)

    def deliveries(self, workspace: str, webhook_id: str) -> list[Delivery] | None:
        key = _uuid(webhook_id)
        if key is None:
            return None
        with self._pool.connection() as conn:
            found = conn.execute(
                self.q("SELECT 1 FROM {webhooks} WHERE id = %s AND workspace = %s"),
                (key, workspace),
            ).fetchone()
            if found is None:
                return None
            rows = conn.execute(
                self.q(
                    "SELECT id::text, event, state, attempts, last_status, next_attempt_at"
                    " FROM {webhook_deliveries} WHERE webhook_id = %s"
                    " ORDER BY notification_id DESC LIMIT 1000"
                ),
                (key,),
            ).fetchall()
        return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # --- derivation ---------------------------------------------------------------
    def derive(self, now: datetime) -> int:
        try:
            with self._pool.connection() as conn, conn.transaction():
                return self._derive(conn, now)
        except psycopg.errors.UndefinedTable:
            return 0  # the projections have not made their tables yet

    def _derive(self, conn: psycopg.Connection[Any], now: datetime) -> int:
        row = conn.execute(
            self.q(
                "SELECT position FROM {webhook_tracking} WHERE name = %s FOR UPDATE SKIP LOCKED"
            ),
            (TRACKING_NAME,),
        ).fetchone()
        if row is None:
            return 0  # another process is deriving right now
        position = int(row[0])
        tracked = conn.execute(
            self.q(
                "SELECT count(*), min(position) FROM {projection_tracking} WHERE name = ANY(%s)"
            ),
            (list(TRACKED_BY),),
        ).fetchone()
        if tracked is None or tracked[0] < len(TRACKED_BY) or tracked[1] <= position:
            return 0
        bound = int(tracked[1])
        first = conn.execute(self.q("SELECT min(registered_after) FROM {webhooks}")).fetchone()
        if first is None or first[0] is None:
            self._move(conn, bound)  # no webhook: nothing before now can ever be due
            return 0
        start = max(position, int(first[0]))
        end = min(bound, start + PAGE)
        made = self._deliveries(conn, start, end, now) if start < end else []
        if made:
            conn.execute(
                self.q(
                    "INSERT INTO {webhook_deliveries} (id, webhook_id, notification_id, event,"
                    " body, state, due_since, next_attempt_at)"
                    " SELECT (k->>0)::uuid, (k->>1)::uuid, (k->>2)::int8, k->>3, k->>4,"
                    " 'pending', %s, %s FROM jsonb_array_elements(%s::jsonb) AS k"
                    " ON CONFLICT (id) DO NOTHING"
                ),
                (now, now, json.dumps(made)),
            )
        self._move(conn, max(end, position))
        return len(made)

    def _move(self, conn: psycopg.Connection[Any], position: int) -> None:
        conn.execute(
            self.q("UPDATE {webhook_tracking} SET position = %s WHERE name = %s"),
            (position, TRACKING_NAME),
        )

    def _deliveries(
        self, conn: psycopg.Connection[Any], start: int, end: int, now: datetime
    ) -> list[list[Any]]:
        """The deliveries of the terminal events in ``(start, end]``, as rows to insert."""
        with conn.cursor(binary=True) as cur:
            cur.execute(
                self.q(
                    "SELECT notification_id, originator_id::text, originator_version, name, state"
                    " FROM (SELECT *, split_part(topic, '.', -1) AS name FROM {events}"
                    "  WHERE notification_id > %s AND notification_id <= %s) AS page"
                    " WHERE name = ANY(%s) ORDER BY notification_id"
                ),
                (start, end, list(TERMINAL_EVENT_NAMES)),
            )
            events = [decode(*r) for r in cur.fetchall()]
        if not events:
            return []
        ids = [e.originator_id for e in events]
        subjects: dict[str, tuple[str, JsonObject]] = {}
        for pid, workspace, phases, counts in conn.execute(
            self.q(
                "SELECT pipeline_id, workspace, phases, counts FROM {pipeline_status}"
                " WHERE pipeline_id = ANY(%s)"
            ),
            (ids,),
        ).fetchall():
            subjects[pid] = (workspace, dict(counts_dict(phases, counts)))
        for pull_id, workspace, created, updated, unchanged, deleted in conn.execute(
            self.q(
                "SELECT pull_id, workspace, created, updated, unchanged, deleted"
                " FROM {pull_status} WHERE pull_id = ANY(%s)"
            ),
            (ids,),
        ).fetchall():
            totals = {"created": created, "updated": updated, "unchanged": unchanged}
            subjects[pull_id] = (workspace, {**totals, "deleted": deleted})
        workspaces = sorted({s[0] for s in subjects.values()})
        hooks = conn.execute(
            self.q(
                "SELECT id::text, workspace, events, registered_after FROM {webhooks}"
                " WHERE workspace = ANY(%s) ORDER BY created_at, id"
            ),
            (workspaces,),
        ).fetchall()
        made: list[list[Any]] = []
        for event in events:
            kind = webhook_event(event.name, event.data)
            subject = subjects.get(event.originator_id)
            if kind is None or subject is None:
                continue
            workspace, counts = subject
            stated = event.data.get("counts")
            if isinstance(stated, dict) and event.name in ("PipelineCompleted", "PullCompleted"):
                counts = stated  # as the event says: the row may have moved on (a retry)
            for hook_id, hook_ws, hook_events, registered_after in hooks:
                if hook_ws != workspace or kind not in hook_events:
                    continue
                if event.notification_id <= registered_after:
                    continue
                key = delivery_id(hook_id, event.notification_id)
                body = payload(key, kind, workspace, event.originator_id, counts, event.timestamp)
                made.append(
                    [key, hook_id, event.notification_id, kind, json.dumps(body, sort_keys=False)]
                )
        return made

    # --- sending ------------------------------------------------------------------
    def claim(
        self, now: datetime, lease_until: datetime, owner: str, limit: int
    ) -> list[DueDelivery]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.q(
                    "UPDATE {webhook_deliveries} d SET lease_owner = %s, lease_until = %s"
                    " FROM (SELECT id FROM {webhook_deliveries} WHERE state = 'pending'"
                    "  AND next_attempt_at <= %s AND (lease_until IS NULL OR lease_until < %s)"
                    "  ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) AS c,"
                    " {webhooks} w WHERE d.id = c.id AND w.id = d.webhook_id"
                    " RETURNING d.id::text, w.url, w.secret, d.event, d.body, d.attempts,"
                    " d.due_since"
                ),
                (owner, lease_until, now, now, limit),
            ).fetchall()
        return [DueDelivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def record(
        self,
        delivery_id: str,
        owner: str,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> bool:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                self.q(
                    "UPDATE {webhook_deliveries} SET state = %s, attempts = attempts + 1,"
                    " last_status = %s, last_error = %s, next_attempt_at = %s,"
                    " lease_owner = NULL, lease_until = NULL,"
                    " finished_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END"
                    " WHERE id = %s AND lease_owner = %s AND state = 'pending'"
                ),
                (state, status, error, next_attempt_at, state, delivery_id, owner),
            )
            return bool(cursor.rowcount > 0)

    def states(self) -> dict[str, int]:
        """Deliveries by state, for ``/metrics``."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.q("SELECT state, count(*) FROM {webhook_deliveries} GROUP BY state")
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}
