"""How long planning takes at the scale DESIGN §9 designs for.

Builds, in memory, a main of 100,000 files in four folders with single and
multiple reference fields, and a draft of 10,000 changes: modified files
(real changes, @-refs that resolve to the id already on main, re-pointing at
new files), added files that point at each other in cycles, and deleted files
that unchanged main files still point at. Only ``plan()`` is timed; the
in-memory lookups it calls answer from prebuilt indexes, as the Postgres
adapter answers from indexed tables.

The raw baseline, timed in the same run next to each ``plan()``, is the least
any planner must do with these inputs: decode every changed file from its JSON
text and look each @-reference of the draft up in an index. ``ratio`` is
``baseline_s / plan_s``, the share of that raw speed the planner keeps: higher
is better, and it depends far less on the day's machine than ``plan_s``.

    python -m bench.plan [--profile]
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import random
import statistics
import sys
import time
from typing import Any

from domain.planner import plan
from domain.pointers import ref_strings_by_field
from domain.schema import FolderSchema, ReferenceField
from fixtures.planner import InMemoryInputs

MAIN_FILES = {"authors": 10_000, "tags": 5_000, "series": 10_000, "books": 75_000}
MODIFIED = 6_400
ADDED_PAIRS = 1_250  # a book and its author, pointing at each other
DELETED = {"tags": 100, "authors": 300, "books": 600, "series": 100}
RUNS = 3

SCHEMAS = {
    "books": FolderSchema(
        "books",
        fields=(
            ReferenceField("author", "authors"),
            ReferenceField("tags", "tags", multiple=True),
            ReferenceField("series", "series"),
        ),
    ),
    "authors": FolderSchema("authors", fields=(ReferenceField("favourite", "books"),)),
    "series": FolderSchema("series", fields=(ReferenceField("books", "books", multiple=True),)),
    "tags": FolderSchema("tags"),
}


def path(folder: str, index: int) -> str:
    return f"{folder}/{folder[0]}{index:06d}.json"


def rid(folder: str, index: int) -> str:
    return f"{folder[0]}{index:06d}-rec"


def build_main(rnd: random.Random) -> dict[str, dict[str, Any]]:
    main: dict[str, dict[str, Any]] = {}
    n = MAIN_FILES
    for i in range(n["tags"]):
        main[path("tags", i)] = {"id": rid("tags", i), "label": f"tag {i}", "createdOn": "2024"}
    for i in range(n["authors"]):
        main[path("authors", i)] = {
            "id": rid("authors", i),
            "name": f"author {i}",
            "bio": "x" * 200,
            "favourite": rid("books", rnd.randrange(n["books"])),
            "createdOn": "2024",
            "lastUpdated": "2024",
        }
    for i in range(n["series"]):
        main[path("series", i)] = {
            "id": rid("series", i),
            "name": f"series {i}",
            "books": [rid("books", rnd.randrange(n["books"])) for _ in range(4)],
        }
    for i in range(n["books"]):
        book: dict[str, Any] = {
            "id": rid("books", i),
            "title": f"book {i}",
            "slug": f"book-{i}",
            "pages": rnd.randrange(50, 900),
            "author": rid("authors", rnd.randrange(n["authors"])),
            "tags": [rid("tags", rnd.randrange(n["tags"])) for _ in range(rnd.randrange(4))],
            "series": rid("series", rnd.randrange(n["series"])) if i % 3 == 0 else None,
            "meta": {"isbn": f"978-{i:09d}", "sizes": [1, 2, 3]},
            "createdOn": "2024",
            "cdnUrl": f"https://cdn/{i}",
        }
        if i % 10 == 0:
            book["meta"]["related"] = [path("books", rnd.randrange(n["books"]))]
            book["meta"]["related"] = ["@/" + p for p in book["meta"]["related"]]
        main[path("books", i)] = book
    return main


def build_draft(
    main: dict[str, dict[str, Any]], rnd: random.Random
) -> dict[str, dict[str, Any] | None]:
    draft: dict[str, dict[str, Any] | None] = {}
    for folder, count in DELETED.items():
        for i in rnd.sample(range(MAIN_FILES[folder]), count):
            draft[path(folder, i)] = None
    new_books = [f"books/new-{i:05d}.json" for i in range(ADDED_PAIRS)]
    new_authors = [f"authors/new-{i:05d}.json" for i in range(ADDED_PAIRS)]
    for i, (book, author) in enumerate(zip(new_books, new_authors, strict=True)):
        draft[book] = {
            "title": f"new book {i}",
            "slug": f"new-book-{i}",
            "author": "@/" + author,
            "tags": ["@/" + path("tags", rnd.randrange(MAIN_FILES["tags"])) for _ in range(2)],
            "meta": {"isbn": f"979-{i:09d}", "related": ["@/" + rnd.choice(new_books)]},
        }
        draft[author] = {"name": f"new author {i}", "favourite": "@/" + book, "bio": "y" * 200}
    candidates = [p for p in main if p.startswith(("books/", "authors/")) and p not in draft]
    for index, source in enumerate(rnd.sample(candidates, MODIFIED)):
        content = dict(main[source])
        kind = index % 4
        if kind == 0:
            content["title" if source.startswith("books/") else "name"] = f"changed {index}"
        elif kind == 1 and source.startswith("books/"):
            # the editor writes @-refs where main holds ids: not a change by itself
            content["author"] = "@/" + path("authors", int(content["author"][1:7]))
            content["pages"] = 1
        elif kind == 2:
            target = rnd.choice(new_authors if source.startswith("books/") else new_books)
            content["author" if source.startswith("books/") else "favourite"] = "@/" + target
        else:
            content.pop("createdOn", None)
            content["lastUpdated"] = "2031"  # read-only: ignored
            content["extra"] = {"note": f"n{index}"}
        draft[source] = content
    return draft


class RawPass:
    """Serialised and gathered before timing, so that only decoding and lookups are measured."""

    def __init__(self, draft: dict[str, dict[str, Any] | None], inputs: InMemoryInputs) -> None:
        changed = [content for content in draft.values() if content is not None]
        self.texts = [json.dumps(content) for content in changed]
        self.refs = [
            raw
            for content in changed
            for raws in ref_strings_by_field(content).values()
            for raw in raws
        ]
        self.index = {file.ref: record_id for file, record_id in inputs.ids.items()}

    def run(self) -> int:
        for text in self.texts:
            json.loads(text)
        index = self.index
        return sum(1 for raw in self.refs if index.get(raw) is not None)


def main() -> None:
    rnd = random.Random(7)
    started = time.perf_counter()
    files = build_main(rnd)
    draft = build_draft(files, rnd)
    inputs = InMemoryInputs(files, SCHEMAS)
    raw = RawPass(draft, inputs)
    # The fixture stands in for PostgreSQL: a real process never holds all of
    # main, so keep its 100,000 dicts out of the cyclic collector's scans.
    gc.collect()
    gc.freeze()
    print(f"built main={len(files)} draft={len(draft)} in {time.perf_counter() - started:.1f}s")

    if "--profile" in sys.argv:
        profiler = cProfile.Profile()
        profiler.enable()
        plan(draft, SCHEMAS, inputs)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    timings, cpu, baseline = [], [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        found = raw.run()
        baseline.append(time.perf_counter() - started)
        started, started_cpu = time.perf_counter(), time.process_time()
        result = plan(draft, SCHEMAS, inputs)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    counts = {str(p["phase"]): p["entries"] for p in result.phases()}
    print(f"entries: {len(result.entries)} {counts}")
    print("plan() runs: " + ", ".join(f"{t:.3f}s" for t in timings))
    # CPU time shows how much of a slow wall-clock run was other processes' load.
    print("plan() CPU:  " + ", ".join(f"{t:.3f}s" for t in cpu))
    print(
        f"raw pass:    {len(raw.texts)} files decoded, {len(raw.refs)} refs looked up "
        f"({found} found): " + ", ".join(f"{t:.3f}s" for t in baseline)
    )
    plan_s, baseline_s = statistics.median(timings), statistics.median(baseline)
    print(f"per change: {plan_s / len(draft) * 1e6:.1f} µs")
    print(f"ratio (raw pass / plan, higher is better): {baseline_s / plan_s:.3f}")
    summary = {
        "changes": len(draft),
        "main_files": len(files),
        "plan_s": round(plan_s, 3),
        "baseline_s": round(baseline_s, 3),
        "ratio": round(baseline_s / plan_s, 3),
    }
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
