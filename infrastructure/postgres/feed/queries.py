"""The SQL the event feed runs against eventsourcing's events table.

Every read is keyset-paged (``> last ORDER BY ... LIMIT n``) so a replay of a
million events is a series of short index scans, never one long transaction.
Workspace filtering happens in the database by joining each event to its
originator's first event, which names the workspace: a resume near the head
touches only the few rows after it, and nothing is shipped to Python to be
thrown away.
"""

from __future__ import annotations

from psycopg import sql

from application.projections.events import WORKSPACE_FIELD

# ids as text: the streams send them as text, and parsing a UUID per row costs more than the row
_COLUMNS = sql.SQL("notification_id, originator_id::text, originator_version, topic, state")


class EventQueries:
    def __init__(self, schema: str, table: str) -> None:
        events = sql.Identifier(schema, table)
        self.after = sql.SQL(
            "SELECT {cols} FROM {t} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(cols=_COLUMNS, t=events)
        self.between = sql.SQL(
            "SELECT {cols} FROM {t} WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(cols=_COLUMNS, t=events)
        self.of_originator = sql.SQL(
            "SELECT {cols} FROM {t} WHERE originator_id = %s AND originator_version > %s "
            "ORDER BY originator_version LIMIT %s"
        ).format(cols=_COLUMNS, t=events)
        self.of_workspace = sql.SQL(
            "SELECT e.notification_id, e.originator_id::text, e.originator_version, e.topic, "
            "e.state "
            "FROM {t} e JOIN {t} c "
            "ON c.originator_id = e.originator_id AND c.originator_version = 1 "
            "WHERE e.notification_id > %s AND e.notification_id <= %s "
            "AND convert_from(c.state, 'UTF8')::jsonb ->> {field} = %s "
            "ORDER BY e.notification_id LIMIT %s"
        ).format(t=events, field=sql.Literal(WORKSPACE_FIELD))
        self.creation_states = sql.SQL(
            "SELECT originator_id::text, state FROM {t} "
            "WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1"
        ).format(t=events)
        self.head = sql.SQL(
            "SELECT originator_version, topic FROM {t} WHERE originator_id = %s "
            "ORDER BY originator_version DESC LIMIT 1"
        ).format(t=events)
        self.max_position = sql.SQL("SELECT max(notification_id) FROM {t}").format(t=events)
