"""A local fake of Airtable's Web API, faithful to the facts in CONNECTORS.md, for tests.

The connector's hard parts are the service's rules, not its happy path, so the
fake keeps them: at most 10 records per write (``422 INVALID_RECORDS``), the
``offset`` cursor that expires (``422 LIST_RECORDS_ITERATOR_NOT_AVAILABLE``),
empty values (``""``, ``[]``, ``false``, ``null``) left out of every answer,
reciprocal linked-record fields that a delete silently unlinks, upserts on
``fieldsToMergeOn``, ``{"error": {"type", "message"}}`` bodies, a 403 for an
unknown base or table, and the rate limit of 5 requests per second per base
whose excess is a 429 ``RATE_LIMIT_REACHED`` (no ``Retry-After``) followed by
``penalty_s`` (30 s on Airtable) of refusals for that base.

Seed (also ``PUT /_admin/schema``, which replaces the base)::

    {"base_id": "app...", "tables": {"books": {
        "id": "tbl..." (optional), "unique": "slug" (for the duplicates count),
        "fields": {"slug": "singleLineText",
                   "author": {"type": "multipleRecordLinks", "linkedTable": "authors",
                              "inverse": "books"}},
        "records": [{"id": "rec..." (optional), "fields": {...}}]}}}

An inverse field missing from the linked table is added to it. Admin side (no
auth, no rate limit): ``GET|PUT /_admin/faults``, ``GET|DELETE /_admin/stats``
(``duplicates`` counts records sharing a table's ``unique`` value past the
first), ``GET /_admin/tables/{table}`` (every record), ``POST
/_admin/cursors/expire``. Handlers are synchronous once the body is read, so
a request's checks and writes never interleave with another's.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domain.json_types import JsonObject, JsonValue

MAX_RECORDS = 10
MAX_PAGE_SIZE = 100
LINK = "multipleRecordLinks"
COMPUTED_TYPES = frozenset({"formula", "createdTime", "lastModifiedTime", "autoNumber", "rollup"})
_TEXT = frozenset({"singleLineText", "multilineText", "richText", "email", "url", "phoneNumber"})
_NUMBER = frozenset({"number", "currency", "percent", "rating", "duration"})
_NOT_FOUND_MODEL = (
    "Invalid permissions, or the requested model was not found. Check that both your user "
    "and your token have the required permissions, and that the model names and/or ids are correct."
)


class AirtableError(Exception):
    """An answer the fake gives instead of a result, in Airtable's error shape."""

    def __init__(self, status: int, kind: str, message: str | None = None) -> None:
        super().__init__(message or kind)
        self.status = status
        self.body: JsonValue = (
            {"error": kind} if message is None else {"error": {"type": kind, "message": message}}
        )


def _invalid(kind: str, message: str) -> AirtableError:
    return AirtableError(422, kind, message)


@dataclass(frozen=True)
class FakeFaults:
    rate_limit: float | None = 5.0
    """Requests per ``rate_window_s`` per base (a sliding window); None: unlimited."""
    rate_window_s: float = 1.0
    penalty_s: float = 30.0
    """After a request over the limit, every request to the base is refused this long."""
    lose_responses: int = 0
    """The next N writes are applied and then answered 502, as if the answer was lost."""
    lost_response_rate: float = 0.0
    fail_rate: float = 0.0
    """Share of requests answered 503 without being applied."""
    outage: bool = False
    cursor_ttl_s: float = 300.0
    seed: int | None = None

    @classmethod
    def from_json(cls, raw: Any) -> FakeFaults:
        if not isinstance(raw, dict) or set(raw) - {f.name for f in fields(cls)}:
            raise ValueError(f"faults take the keys {sorted(f.name for f in fields(cls))}")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


@dataclass
class _Field:
    id: str
    name: str
    type: str
    link: str | None = None
    """For a linked-record field: the linked table's id."""
    inverse: str | None = None
    """For a linked-record field: the name of the field on the linked table that mirrors it."""

    def to_json(self, tables: dict[str, _Table]) -> JsonObject:
        body: JsonObject = {"id": self.id, "name": self.name, "type": self.type}
        if self.link is not None:
            target = tables[self.link]
            inverse = target.fields.get(self.inverse or "")
            body["options"] = {
                "linkedTableId": self.link,
                "inverseLinkFieldId": inverse.id if inverse else None,
                "prefersSingleRecordLink": False,
            }
        return body


@dataclass
class _Row:
    id: str
    created: str
    fields: JsonObject = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {"id": self.id, "createdTime": self.created, "fields": dict(self.fields)}


@dataclass
class _Table:
    id: str
    name: str
    fields: dict[str, _Field] = field(default_factory=dict)
    rows: dict[str, _Row] = field(default_factory=dict)
    unique: str | None = None


def _empty(value: JsonValue) -> bool:
    return value is None or value == "" or value == [] or value is False


class AirtableBase:
    """One base's tables and records, with Airtable's rules for writes."""

    def __init__(self, seed: JsonObject, rng: random.Random) -> None:
        self._rng = rng
        self.id = str(seed.get("base_id") or self.new_id("app"))
        self.tables: dict[str, _Table] = {}
        specs = seed.get("tables") or {}
        for name, spec in specs.items():
            table = _Table(str(spec.get("id") or self.new_id("tbl")), name)
            table.unique = spec.get("unique")
            self.tables[table.id] = table
        by_name = {t.name: t for t in self.tables.values()}
        for name, spec in specs.items():
            for field_name, raw in (spec.get("fields") or {}).items():
                self._add_field(by_name[name], field_name, raw, by_name)
        for name, spec in specs.items():
            for record in spec.get("records") or []:
                self.write(by_name[name], [dict(record)], create=True, seeding=True)

    def new_id(self, prefix: str) -> str:
        alphabet = string.ascii_letters + string.digits
        return prefix + "".join(self._rng.choice(alphabet) for _ in range(14))

    def _add_field(
        self, table: _Table, name: str, raw: JsonValue, by_name: dict[str, _Table]
    ) -> None:
        spec = {"type": raw} if isinstance(raw, str) else dict(raw)
        kind = str(spec["type"])
        if kind != LINK:
            table.fields.setdefault(name, _Field(self.new_id("fld"), name, kind))
            return
        target = by_name[spec["linkedTable"]]
        inverse = str(spec.get("inverse") or f"{table.name} ({name})")
        existing = table.fields.get(name)
        if existing is None:
            table.fields[name] = _Field(self.new_id("fld"), name, LINK, target.id, inverse)
        if inverse not in target.fields:
            target.fields[inverse] = _Field(self.new_id("fld"), inverse, LINK, table.id, name)

    def table(self, id_or_name: str) -> _Table:
        found = self.tables.get(id_or_name) or next(
            (t for t in self.tables.values() if t.name == id_or_name), None
        )
        if found is None:
            raise AirtableError(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", _NOT_FOUND_MODEL)
        return found

    # -- writes ------------------------------------------------------------------------

    def write(
        self,
        table: _Table,
        records: list[JsonObject],
        *,
        create: bool,
        merge_on: list[str] | None = None,
        seeding: bool = False,
    ) -> tuple[list[_Row], list[str], list[str]]:
        """Check every record, then apply all: ``(rows, created ids, updated ids)``."""
        plan: list[tuple[_Row | None, JsonObject, str | None]] = []
        for record in records:
            values = record.get("fields")
            if not isinstance(values, dict):
                raise _invalid("INVALID_REQUEST_UNKNOWN", "each record needs an object 'fields'")
            self._check_values(table, values, seeding)
            row = self._target(table, record, create, merge_on, values)
            plan.append((row, values, record.get("id") if seeding else None))
        rows: list[_Row] = []
        created: list[str] = []
        updated: list[str] = []
        for row, values, wanted_id in plan:
            if row is None:
                row = _Row(wanted_id or self.new_id("rec"), _now())
                table.rows[row.id] = row
                created.append(row.id)
            else:
                updated.append(row.id)
            for name, value in values.items():
                self._set(table, row, name, value)
            rows.append(row)
        return rows, created, updated

    def _target(
        self,
        table: _Table,
        record: JsonObject,
        create: bool,
        merge_on: list[str] | None,
        values: JsonObject,
    ) -> _Row | None:
        record_id = record.get("id")
        if create:
            return None
        if record_id is not None:
            row = table.rows.get(record_id) if isinstance(record_id, str) else None
            if row is None:
                raise _invalid("ROW_DOES_NOT_EXIST", f"Record ID {record_id} does not exist")
            return row
        if merge_on is None:
            raise _invalid("INVALID_RECORDS", "each record to update needs an 'id'")
        key = [values.get(name) for name in merge_on]
        matches = [r for r in table.rows.values() if [r.fields.get(n) for n in merge_on] == key]
        if len(matches) > 1:
            raise _invalid(
                "INVALID_VALUE_FOR_COLUMN",
                f"{len(matches)} records match fieldsToMergeOn {merge_on}: cannot upsert",
            )
        return matches[0] if matches else None

    def _check_values(self, table: _Table, values: JsonObject, seeding: bool) -> None:
        for name, value in values.items():
            spec = table.fields.get(name)
            if spec is None:
                raise _invalid("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if spec.type in COMPUTED_TYPES and not seeding:
                raise _invalid(
                    "INVALID_VALUE_FOR_COLUMN",
                    f'Field "{name}" cannot accept a value because the field is computed',
                )
            if not _fits(spec.type, value):
                raise _invalid(
                    "INVALID_VALUE_FOR_COLUMN", f'Field "{name}" cannot accept the provided value'
                )
            if spec.link is not None and not _empty(value):
                linked = self.tables[spec.link]
                for target in value:
                    if target not in linked.rows:
                        raise _invalid("ROW_DOES_NOT_EXIST", f"Record ID {target} does not exist")

    def _set(self, table: _Table, row: _Row, name: str, value: JsonValue) -> None:
        spec = table.fields[name]
        if spec.link is not None:
            before = set(row.fields.get(name) or [])
            after = set(value or [])
            linked = self.tables[spec.link]
            for gone in before - after:
                self._unlink_one(linked, gone, spec.inverse, row.id)
            for new in after - before:
                cell = linked.rows[new].fields.setdefault(spec.inverse or "", [])
                if row.id not in cell:
                    cell.append(row.id)
            value = list(dict.fromkeys(value or []))
        if _empty(value):
            row.fields.pop(name, None)
        else:
            row.fields[name] = value

    @staticmethod
    def _unlink_one(table: _Table, row_id: str, field_name: str | None, target: str) -> None:
        row = table.rows.get(row_id)
        if row is None or field_name is None:
            return
        cell = [i for i in row.fields.get(field_name) or [] if i != target]
        if cell:
            row.fields[field_name] = cell
        else:
            row.fields.pop(field_name, None)

    def delete(self, table: _Table, ids: list[str]) -> None:
        """All or none; every link cell that held a deleted record loses it (no 409)."""
        for record_id in ids:
            if record_id not in table.rows:
                raise _invalid("ROW_DOES_NOT_EXIST", f"Record ID {record_id} does not exist")
        for record_id in ids:
            table.rows.pop(record_id, None)
            for other in self.tables.values():
                for spec in other.fields.values():
                    if spec.link == table.id:
                        for row in other.rows.values():
                            self._unlink_one(other, row.id, spec.name, record_id)

    def duplicates(self) -> int:
        count = 0
        for table in self.tables.values():
            if table.unique:
                seen = Counter(json.dumps(r.fields.get(table.unique)) for r in table.rows.values())
                count += sum(n - 1 for n in seen.values())
        return count


def _fits(kind: str, value: JsonValue) -> bool:
    """Whether ``value`` may go in a field of type ``kind`` (null always clears)."""
    if value is None:
        return True
    if kind in _TEXT or kind in ("singleSelect", "date", "dateTime"):
        return isinstance(value, str)
    if kind in _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "checkbox":
        return isinstance(value, bool)
    if kind in (LINK, "multipleSelects"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Gate:
    """Auth, the per-base rate limit with its penalty, and the random faults."""

    def __init__(self, faults: FakeFaults, token: str | None, clock: Callable[[], float]) -> None:
        self.stats: Counter[str] = Counter()
        self.token = token
        self._clock = clock
        self.configure(faults)

    def configure(self, faults: FakeFaults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._admitted: list[float] = []
        self._penalty_until = 0.0
        self._lose = faults.lose_responses

    def admit(self, authorization: str | None) -> AirtableError | None:
        if self.token is not None and authorization != f"Bearer {self.token}":
            self.stats["unauthorized"] += 1
            return AirtableError(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        if self.faults.outage or self._roll(self.faults.fail_rate):
            self.stats["failed"] += 1
            return AirtableError(503, "SERVICE_UNAVAILABLE", "injected failure, nothing applied")
        if self._over_limit():
            self.stats["rate_limited"] += 1
            return _RateLimited()
        return None

    def _over_limit(self) -> bool:
        limit, now = self.faults.rate_limit, self._clock()
        if limit is None:
            return False
        if now < self._penalty_until:
            return True
        window = self.faults.rate_window_s
        self._admitted = [t for t in self._admitted if t > now - window]
        if len(self._admitted) >= limit:
            self._penalty_until = now + self.faults.penalty_s
            return True
        self._admitted.append(now)
        return False

    def lose(self) -> bool:
        """After an applied write: whether its answer is 'lost'."""
        lost = self._lose > 0 or self._roll(self.faults.lost_response_rate)
        if self._lose > 0:
            self._lose -= 1
        if lost:
            self.stats["lost_responses"] += 1
        return lost

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate


class _RateLimited(AirtableError):
    def __init__(self) -> None:
        super().__init__(429, "RATE_LIMIT_REACHED")
        message = "Rate limit exceeded. Please try again later"
        self.body = {"errors": [{"error": "RATE_LIMIT_REACHED", "message": message}]}


class _Cursors:
    """Listing cursors: opaque, each good for ``ttl`` seconds or until expired by hand."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._open: dict[str, tuple[str, int, float]] = {}

    def issue(self, table: _Table, position: int, rng: random.Random) -> str:
        token = "itr" + "".join(rng.choice(string.ascii_letters) for _ in range(14))
        cursor = f"{token}/{position}"
        self._open[cursor] = (table.id, position, self._clock())
        return cursor

    def resolve(self, table: _Table, cursor: str, ttl: float) -> int:
        found = self._open.get(cursor)
        if found is None or found[0] != table.id or self._clock() - found[2] > ttl:
            self._open.pop(cursor, None)
            raise _invalid("LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "Iterator not available")
        return found[1]

    def expire(self) -> int:
        count = len(self._open)
        self._open.clear()
        return count


def _answer(status: int, body: JsonValue) -> Response:
    return JSONResponse(body, status_code=status)


def _records_param(request: Request) -> list[str]:
    return request.query_params.getlist("records[]") or request.query_params.getlist("records")


_BY_IDS = re.compile(
    r"OR\((RECORD_ID\(\)='rec[A-Za-z0-9]{14}'(?:,\s*)?)+\)|RECORD_ID\(\)='rec[A-Za-z0-9]{14}'"
)


def _filtered(table: _Table, formula: str, size: int) -> list[JsonObject]:
    """The records a ``filterByFormula`` picks. The fake knows one kind of formula, the one
    publishd sends: ``OR(RECORD_ID()='rec…', …)`` (or one ``RECORD_ID()='rec…'``)."""
    if not _BY_IDS.fullmatch(formula.strip()):
        raise _invalid("INVALID_FILTER_BY_FORMULA", "the fake only filters by RECORD_ID()")
    ids = re.findall(r"rec[A-Za-z0-9]{14}", formula)
    rows = [table.rows[i] for i in dict.fromkeys(ids) if i in table.rows]
    if len(rows) > size:
        raise _invalid("INVALID_REQUEST_UNKNOWN", "the fake pages no filtered listing")
    return [r.to_json() for r in rows]


def _page_size(request: Request) -> int:
    raw = request.query_params.get("pageSize", str(MAX_PAGE_SIZE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise _invalid("INVALID_REQUEST_UNKNOWN", f"pageSize must be 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _batch(body: JsonValue) -> list[JsonObject]:
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_RECORDS:
        raise _invalid(
            "INVALID_RECORDS", f'"records" must be an array of 1 to {MAX_RECORDS} records'
        )
    if not all(isinstance(r, dict) for r in records):
        raise _invalid("INVALID_RECORDS", "each record must be an object")
    return records


def create_app(
    seed: JsonObject | None = None,
    *,
    token: str | None = None,
    faults: FakeFaults | None = None,
    clock: Callable[[], float] = time.monotonic,
    id_seed: int = 0,
) -> Starlette:
    """A fresh fake Airtable serving one base at ``/v0``; ``token`` required when given."""
    rng = random.Random(id_seed)
    state = {"base": AirtableBase(seed or {}, rng)}
    gate = _Gate(faults or FakeFaults(), token, clock)
    cursors = _Cursors(clock)
    stats = gate.stats

    def base(request: Request) -> AirtableBase:
        current = state["base"]
        if request.path_params["base"] != current.id:
            raise AirtableError(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", _NOT_FOUND_MODEL)
        return current

    def list_records(request: Request, body: JsonValue) -> Response:
        b = base(request)
        table = b.table(request.path_params["table"])
        size = _page_size(request)
        formula = request.query_params.get("filterByFormula")
        if formula is not None:
            return _answer(200, {"records": _filtered(table, formula, size)})
        cursor = request.query_params.get("offset")
        start = cursors.resolve(table, cursor, gate.faults.cursor_ttl_s) if cursor else 0
        rows = list(table.rows.values())[start : start + size]
        answer: JsonObject = {"records": [r.to_json() for r in rows]}
        if start + size < len(table.rows):
            answer["offset"] = cursors.issue(table, start + size, rng)
        return _answer(200, answer)

    def read_record(request: Request, body: JsonValue) -> Response:
        table = base(request).table(request.path_params["table"])
        row = table.rows.get(request.path_params["record"])
        if row is None:
            raise AirtableError(404, "NOT_FOUND")
        return _answer(200, row.to_json())

    def create_records(request: Request, body: JsonValue) -> Response:
        b = base(request)
        table = b.table(request.path_params["table"])
        rows, created, _ = b.write(table, _batch(body), create=True)
        stats["creates"] += len(created)
        return _answer(200, {"records": [r.to_json() for r in rows]})

    def update_records(request: Request, body: JsonValue) -> Response:
        b = base(request)
        table = b.table(request.path_params["table"])
        upsert = body.get("performUpsert") if isinstance(body, dict) else None
        merge_on = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
        if upsert is not None and (not isinstance(merge_on, list) or not 1 <= len(merge_on) <= 3):
            raise _invalid("INVALID_REQUEST_UNKNOWN", "fieldsToMergeOn takes 1 to 3 field names")
        for name in merge_on or []:
            if name not in table.fields:
                raise _invalid("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
        rows, created, updated = b.write(table, _batch(body), create=False, merge_on=merge_on)
        stats["creates"] += len(created)
        stats["updates"] += len(updated)
        answer: JsonObject = {"records": [r.to_json() for r in rows]}
        if upsert is not None:
            answer |= {"createdRecords": created, "updatedRecords": updated}
        return _answer(200, answer)

    def delete_records(request: Request, body: JsonValue) -> Response:
        b = base(request)
        table = b.table(request.path_params["table"])
        ids = _records_param(request)
        if not 1 <= len(ids) <= MAX_RECORDS:
            raise _invalid("INVALID_RECORDS", f'"records" must be 1 to {MAX_RECORDS} record IDs')
        b.delete(table, ids)
        stats["deletes"] += len(ids)
        return _answer(200, {"records": [{"id": i, "deleted": True} for i in ids]})

    def meta_tables(request: Request, body: JsonValue) -> Response:
        b = base(request)
        tables = [
            {
                "id": t.id,
                "name": t.name,
                "fields": [f.to_json(b.tables) for f in t.fields.values()],
            }
            for t in b.tables.values()
        ]
        return _answer(200, {"tables": tables})

    def public(handler: Callable[[Request, JsonValue], Response]) -> Any:
        async def endpoint(request: Request) -> Response:
            stats["requests"] += 1
            stats[f"requests_{request.method}"] += 1
            refused = gate.admit(request.headers.get("authorization"))
            if refused is not None:
                return _answer(refused.status, refused.body)
            writes = request.method in ("POST", "PATCH", "DELETE")
            raw = await request.body() if writes else b""
            try:
                body = json.loads(raw) if raw else None
                response = handler(request, body)
            except ValueError:
                return _answer(422, {"error": {"type": "INVALID_REQUEST_UNKNOWN", "message": ""}})
            except AirtableError as exc:
                return _answer(exc.status, exc.body)
            if writes and gate.lose():
                return _answer(502, {"error": {"type": "BAD_GATEWAY", "message": "lost"}})
            return response

        return endpoint

    async def get_stats(request: Request) -> Response:
        return _answer(200, {**stats, "duplicates": state["base"].duplicates()})

    async def reset_stats(request: Request) -> Response:
        stats.clear()
        return Response(status_code=204)

    async def get_faults(request: Request) -> Response:
        return _answer(200, asdict(gate.faults))

    async def put_faults(request: Request) -> Response:
        try:
            gate.configure(FakeFaults.from_json(json.loads(await request.body())))
        except ValueError as exc:
            return _answer(400, {"error": {"type": "INVALID_FAULTS", "message": str(exc)}})
        return _answer(200, asdict(gate.faults))

    async def put_schema(request: Request) -> Response:
        try:
            state["base"] = AirtableBase(json.loads(await request.body()), rng)
        except (ValueError, KeyError, TypeError, AirtableError) as exc:
            return _answer(400, {"error": {"type": "INVALID_SCHEMA", "message": str(exc)}})
        return _answer(200, {"base_id": state["base"].id})

    async def dump_table(request: Request) -> Response:
        try:
            table = state["base"].table(request.path_params["table"])
        except AirtableError as exc:
            return _answer(exc.status, exc.body)
        return _answer(200, {"id": table.id, "records": [r.to_json() for r in _rows(table)]})

    async def expire_cursors(request: Request) -> Response:
        stats["cursors_expired"] += cursors.expire()
        return Response(status_code=204)

    routes = [
        Route("/_admin/stats", get_stats, methods=["GET"]),
        Route("/_admin/stats", reset_stats, methods=["DELETE"]),
        Route("/_admin/faults", get_faults, methods=["GET"]),
        Route("/_admin/faults", put_faults, methods=["PUT"]),
        Route("/_admin/schema", put_schema, methods=["PUT"]),
        Route("/_admin/tables/{table}", dump_table, methods=["GET"]),
        Route("/_admin/cursors/expire", expire_cursors, methods=["POST"]),
        Route("/v0/meta/bases/{base}/tables", public(meta_tables), methods=["GET"]),
        Route("/v0/{base}/{table}/{record}", public(read_record), methods=["GET"]),
        Route("/v0/{base}/{table}", public(list_records), methods=["GET"]),
        Route("/v0/{base}/{table}", public(create_records), methods=["POST"]),
        Route("/v0/{base}/{table}", public(update_records), methods=["PATCH"]),
        Route("/v0/{base}/{table}", public(delete_records), methods=["DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.base = state
    app.state.gate = gate
    return app


def _rows(table: _Table) -> Iterator[_Row]:
    return iter(list(table.rows.values()))


__all__ = ["AirtableBase", "AirtableError", "FakeFaults", "create_app"]
