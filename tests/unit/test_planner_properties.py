"""Properties of the planner over random drafts and reference graphs.

Each plan is executed against a tiny model of the external service that
behaves like the sandbox: it resolves @-refs at the moment of sending and
refuses pointers to records that don't exist, and deleting a record that a
surviving record still points at. The final state is compared with what the
draft asked for, using an independent oracle for reference clearing.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calls import waves
from domain.errors import DanglingReferences, NothingToPublish
from domain.plan import PHASES, Plan
from domain.planner import plan
from domain.schema import FolderSchema
from fixtures.planner import InMemoryInputs, library_schemas

SCHEMAS = library_schemas()
FOLDERS = sorted(SCHEMAS)
UNSENT = {"id", "createdOn", "lastUpdated", "cdnUrl"}
Json = Any


class Scenario:
    def __init__(self, main: dict[str, Json], draft: dict[str, Json | None]) -> None:
        self.main = main
        self.draft = draft
        self.ids = {p: c["id"] for p, c in main.items()}
        self.deleted = {p for p, c in draft.items() if c is None and p in main}
        self.added = {p for p, c in draft.items() if c is not None and p not in main}

    def __repr__(self) -> str:
        return f"Scenario(main={self.main!r}, draft={self.draft!r})"


def _pointer(
    draw: Any, folder: str | None, pools: dict[str, list[str]], ids: dict[str, str]
) -> Json:
    """An @-ref (to any known file) or, in a reference field, sometimes a resolved id."""
    candidates = [p for p in pools["any"] if folder is None or p.startswith(folder + "/")]
    if not candidates:
        return None
    target = draw(st.sampled_from(candidates))
    if folder is not None and target in ids and draw(st.booleans()):
        return ids[target]
    return "@/" + target


def _content(draw: Any, path: str, pools: dict[str, list[str]], ids: dict[str, str]) -> Json:
    folder = path.split("/")[0]
    content: dict[str, Json] = {"title": f"title-{draw(st.integers(0, 2))}"}
    if folder == "books":
        content["author"] = _pointer(draw, "authors", pools, ids)
        tags = [_pointer(draw, "tags", pools, ids) for _ in range(draw(st.integers(0, 3)))]
        content["tags"] = [t for t in tags if t is not None]
    if folder == "authors":
        content["favourite"] = _pointer(draw, "books", pools, ids)
    if draw(st.booleans()):
        refs = [_at_ref(draw, pools) for _ in range(draw(st.integers(0, 2)))]
        content["notes"] = {"see": _at_ref(draw, pools), "list": [r for r in refs if r]}
    if draw(st.booleans()):
        content["createdOn"] = f"2024-0{draw(st.integers(1, 9))}"
    return content


def _at_ref(draw: Any, pools: dict[str, list[str]]) -> str | None:
    return "@/" + draw(st.sampled_from(pools["any"])) if pools["any"] else None


@st.composite
def scenarios(draw: Any) -> Scenario:
    main_paths = [f"{f}/m{i}.json" for f in FOLDERS for i in range(draw(st.integers(0, 4)))]
    ids = {p: f"id-{p.split('/')[0]}-{p.split('/')[1][:-5]}" for p in main_paths}
    main_pools = {"any": main_paths}
    main: dict[str, Json] = {}
    for path in main_paths:
        content = _content(draw, path, main_pools, ids)
        # Main holds what the service returned: ids in reference fields.
        for key in ("author", "favourite"):
            if isinstance(content.get(key), str):
                content[key] = (
                    ids[content[key][2:]] if content[key].startswith("@/") else content[key]
                )
        if "tags" in content:
            content["tags"] = [ids[t[2:]] if t.startswith("@/") else t for t in content["tags"]]
        main[path] = content | {"id": ids[path], "createdOn": "2024-01-01"}
    fates = {p: draw(st.sampled_from(["keep", "keep", "modify", "delete"])) for p in main_paths}
    added = [f"{f}/n{i}.json" for f in FOLDERS for i in range(draw(st.integers(0, 3)))]
    pools = {"any": main_paths + added}
    draft: dict[str, Json | None] = {}
    for path in main_paths:
        if fates[path] == "delete":
            draft[path] = None
        elif fates[path] == "modify":
            content = _content(draw, path, pools, ids)
            draft[path] = content | ({"id": ids[path]} if draw(st.booleans()) else {})
    for path in added:
        draft[path] = _content(draw, path, pools, ids)
    if draw(st.booleans()):
        draft["tags/never.json"] = None
    return Scenario(main, draft)


# --- an oracle for clearing, written independently of domain.clearing -------


def oracle_clear(content: dict[str, Json], folder: str, sc: Scenario) -> dict[str, Json]:
    refs = {"@/" + p for p in sc.deleted}
    schema = SCHEMAS[folder]
    ref_fields = {f.name: f.target for f in schema.fields}

    def gone(value: Json, target_folder: str | None) -> bool:
        if not isinstance(value, str):
            return False
        if value in refs:
            return True
        return target_folder is not None and any(
            sc.ids[p] == value and p.startswith(target_folder + "/") for p in sc.deleted
        )

    def walk(value: Json, target_folder: str | None) -> Json:
        if isinstance(value, list):
            return [walk(v, target_folder) for v in value if not gone(v, target_folder)]
        if isinstance(value, dict):
            return {k: None if gone(v, None) else walk(v, None) for k, v in value.items()}
        return value

    return {
        k: None if gone(v, ref_fields.get(k)) else walk(v, ref_fields.get(k))
        for k, v in content.items()
    }


def comparable(content: dict[str, Json]) -> dict[str, Json]:
    return {k: v for k, v in content.items() if k not in UNSENT and v is not None}


# --- a model of the service ------------------------------------------------


class Service:
    def __init__(self, sc: Scenario) -> None:
        self.ids = dict(sc.ids)  # path -> record id, learns created records
        self.records: dict[str, Json] = dict(sc.main)
        self.records = {p: self.resolve(dict(c)) for p, c in sc.main.items()}
        self.sent_refs: list[tuple[str, str]] = []

    def resolve(self, value: Json) -> Json:
        if isinstance(value, str) and value.startswith("@/"):
            path = value[2:]
            assert path in self.ids and path in self.records, f"{value} has no record"
            return self.ids[path]
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def strings(self, value: Json) -> set[str]:
        if isinstance(value, str):
            return {value}
        if isinstance(value, list):
            return set().union(*(self.strings(v) for v in value))
        if isinstance(value, dict):
            return set().union(*(self.strings(v) for k, v in value.items() if k not in UNSENT))
        return set()

    def run(self, result: Plan) -> None:
        checked = False
        for entry in result.entries:
            op = entry.operation
            if entry.phase == "delete" and not checked:
                # Delete calls (one per folder page) go out in any order, and the
                # service refuses a call while a record outside it points into it.
                calls: dict[tuple[str, int], set[str]] = {}
                for e in result.entries:
                    if e.phase == "delete":
                        key = (e.operation["folder"], e.operation["page"])
                        calls.setdefault(key, set()).add(e.path)
                for members in calls.values():
                    doomed = {self.ids[p] for p in members}
                    for path, record in self.records.items():
                        if path not in members:
                            assert not self.strings(record) & doomed, f"{path} points into a delete"
                checked = True
            if op["type"] == "create":
                assert entry.path not in self.records
                self.ids[entry.path] = f"new-{entry.path}"
                self.records[entry.path] = self.resolve(op["fields"])
            elif op["type"] == "update":
                expected = self.ids.get(entry.path) if op["record_id"] is None else op["record_id"]
                assert expected == self.ids[entry.path]
                self.records[entry.path].update(self.resolve(op["fields"]))
            else:
                assert op["record_id"] == self.ids[entry.path]
                del self.records[entry.path]


def try_plan(sc: Scenario) -> Plan | None:
    try:
        return plan(sc.draft, SCHEMAS, InMemoryInputs(sc.main, SCHEMAS), delete_page_size=2)
    except NothingToPublish:
        return None


def expected_final(sc: Scenario, service: Service) -> dict[str, Json]:
    final = {}
    for path in set(sc.main) | sc.added:
        if path in sc.deleted:
            continue
        content = sc.draft.get(path) or sc.main[path]
        final[path] = comparable(service.resolve(oracle_clear(content, path.split("/")[0], sc)))
    return final


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_executing_the_plan_yields_the_draft_and_never_breaks_a_reference(sc: Scenario) -> None:
    result = try_plan(sc)
    service = Service(sc)
    if result is None:
        assert not sc.deleted and not sc.added
        for path, content in sc.draft.items():
            if content is not None:
                assert comparable(service.resolve(content)) == comparable(service.records[path])
        return
    service.run(result)
    assert {p: comparable(r) for p, r in service.records.items()} == expected_final(sc, service)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_every_change_lands_in_exactly_its_phases(sc: Scenario) -> None:
    result = try_plan(sc)
    if result is None:
        return
    by_phase: dict[str, list[str]] = {phase: [] for phase in PHASES}
    for entry in result.entries:
        by_phase[entry.phase].append(entry.path)
    for paths in by_phase.values():
        assert len(paths) == len(set(paths)), "a path appears twice in one phase"
    assert set(by_phase["create"]) == sc.added
    assert set(by_phase["delete"]) == sc.deleted
    assert not set(by_phase["backfill"]) & sc.deleted
    # a deleted file is edited only to let go of a file another delete call removes
    call = {
        e.path: (e.operation["folder"], e.operation["page"])
        for e in result.entries
        if e.phase == "delete"
    }
    for path in sc.deleted:
        elsewhere = Scenario(sc.main, {p: None for p in sc.deleted if call[p] != call[path]})
        folder = path.split("/")[0]
        must_let_go = oracle_clear(sc.main[path], folder, elsewhere) != sc.main[path]
        assert (path in by_phase["edit"]) == must_let_go, path
    assert set(by_phase["edit"]) <= set(sc.main)
    # entries come phase by phase, each phase wave by wave, each wave in path order
    wave = waves(result.entries)
    order = [(PHASES.index(e.phase), wave[e.key], e.path) for e in result.entries]
    assert order == sorted(order)
    # a main file the draft leaves alone is edited only when it points at a delete
    for path in set(sc.main) - set(sc.draft):
        folder = path.split("/")[0]
        needs_clearing = oracle_clear(sc.main[path], folder, sc) != sc.main[path]
        assert (path in by_phase["edit"]) == needs_clearing
    keys = {e.key for e in result.entries}
    for entry in result.entries:
        for dependency in entry.depends_on:
            assert dependency in keys
            phase = dependency.split(":")[0]
            if entry.phase == "create" and phase == "create":
                assert wave[dependency] < wave[entry.key]  # an earlier wave
            else:
                assert PHASES.index(phase) < PHASES.index(entry.phase)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_no_create_or_edit_sends_a_pointer_to_a_record_without_an_id(sc: Scenario) -> None:
    result = try_plan(sc)
    if result is None:
        return
    # Deletes come after edits and creates: until then deleted records still have
    # ids. Pointers into deletes are the model service's check (per delete call).
    # A create's wave goes out after the waves before it: their records have ids.
    with_ids = set(sc.main)
    wave = waves(result.entries)

    def refs(value: Json) -> list[str]:
        if isinstance(value, str):
            return [value[2:]] if value.startswith("@/") else []
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        if isinstance(value, dict):
            return [r for v in value.values() for r in refs(v)]
        return []

    created_before: dict[int, set[str]] = {}
    for entry in result.entries:
        if entry.phase == "create":
            created_before.setdefault(wave[entry.key] + 1, set()).add(entry.path)
    for entry in result.entries:
        if entry.phase == "edit":
            assert set(refs(entry.operation["fields"])) <= with_ids, entry
        if entry.phase == "create":
            earlier = set().union(
                *(paths for w, paths in created_before.items() if w <= wave[entry.key])
            )
            targets = set(refs(entry.operation["fields"]))
            assert targets <= with_ids | earlier, entry
            assert {f"create:{t}" for t in targets & sc.added} == set(entry.depends_on)
        if entry.phase == "backfill":
            targets = set(refs(entry.operation["fields"]))
            assert targets & sc.added, "a backfill that restores no pointer to a new record"
            assert {f"create:{t}" for t in targets & sc.added} <= set(entry.depends_on)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_backfill_restores_exactly_the_stripped_fields(sc: Scenario) -> None:
    result = try_plan(sc)
    if result is None:
        return
    backfills = {e.path: e for e in result.entries if e.phase == "backfill"}
    stripped = {e.path: e for e in result.entries if e.deferred_fields}
    assert set(backfills) >= set(stripped)
    for path, backfill in backfills.items():
        folder = path.split("/")[0]
        content = sc.draft[path]
        assert content is not None
        original = oracle_clear(content, folder, sc)
        assert backfill.operation["fields"] == {
            k: original.get(k) for k in backfill.operation["fields"]
        }
        if path in stripped:
            assert tuple(sorted(backfill.operation["fields"])) == stripped[path].deferred_fields
        if path in sc.added:
            create = next(e for e in result.entries if e.key == f"create:{path}")
            sent = set(create.operation["fields"]) | set(create.deferred_fields)
            assert not set(create.operation["fields"]) & set(create.deferred_fields)
            assert sent == set(content) - UNSENT
            assert backfill.operation["record_id"] is None
            assert f"create:{path}" in backfill.depends_on
        else:
            assert backfill.operation["record_id"] == sc.ids[path]


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_only_cycles_split_an_entry_in_two(sc: Scenario) -> None:
    """A field waits for the backfill only when sending it earlier is impossible.

    A create defers a field only if that field closes a cycle among the
    creates as sent; an edit defers fields only when a delete needs it first.
    """
    result = try_plan(sc)
    if result is None:
        return
    creates = {e.path: e for e in result.entries if e.phase == "create"}
    needed_first = {d for e in result.entries if e.phase == "delete" for d in e.depends_on}
    kept: dict[str, set[str]] = {
        path: {d.split(":", 1)[1] for d in e.depends_on} for path, e in creates.items()
    }

    def reaches(start: str, goal: str) -> bool:
        seen, stack = {start}, [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for nxt in kept.get(node, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    for entry in result.entries:
        if not entry.deferred_fields:
            continue
        if entry.phase == "edit":
            assert entry.key in needed_first, f"{entry.key} could have been one backfill"
            continue
        assert entry.phase == "create"
        content = sc.draft[entry.path]
        assert content is not None
        for name in entry.deferred_fields:
            targets = {t for t in _refs(content[name]) if t in creates}
            assert targets, f"{entry.key} defers {name}, which points at no new record"
            assert any(reaches(t, entry.path) for t in targets), (
                f"{entry.key} defers {name}, which closes no cycle"
            )


def _refs(value: Json) -> list[str]:
    if isinstance(value, str):
        return [value[2:]] if value.startswith("@/") else []
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_same_input_same_plan(sc: Scenario, rnd: random.Random) -> None:
    first = try_plan(sc)
    items = list(sc.draft.items())
    rnd.shuffle(items)
    main_items = list(sc.main.items())
    rnd.shuffle(main_items)
    again = Scenario(dict(main_items), dict(items))
    assert try_plan(again) == first


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.data())
def test_every_dangling_reference_is_listed(sc: Scenario, data: st.DataObject) -> None:
    sources = sorted(p for p, c in sc.draft.items() if c is not None)
    if not sources:
        return
    ghosts = data.draw(st.lists(st.sampled_from(sources), min_size=1, max_size=4))
    draft = {p: (dict(c) if c is not None else None) for p, c in sc.draft.items()}
    expected = []
    for index, source in enumerate(ghosts):
        content = draft[source]
        assert content is not None
        content[f"ghost{index}"] = {"to": f"@/tags/ghost{index}.json"}
        expected.append(
            {"source": source, "field": f"ghost{index}.to", "target": f"tags/ghost{index}.json"}
        )
    try:
        plan(draft, SCHEMAS, InMemoryInputs(sc.main, SCHEMAS))
    except DanglingReferences as error:
        assert error.details == sorted(expected, key=lambda d: (d["source"], d["field"]))
    else:
        raise AssertionError("dangling references were not reported")


def test_schemas_match_the_generator() -> None:
    assert all(isinstance(s, FolderSchema) for s in SCHEMAS.values())
    assert {f.name for f in SCHEMAS["books"].fields} == {"author", "tags"}
