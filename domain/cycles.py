"""Which fields of new records to defer so that creates can go out in dependency waves.

A new record that points at another new record is created after it, with the
pointer resolved in the same request. Records that point at each other in a
cycle cannot all go that way: one field on the cycle is stripped from its
create and restored by a backfill once the targets exist. This module picks
those fields: few, and the same for the same draft.

The graph: a node per new record, an edge per (record, field) to each new
record the field points at. Only edges inside a strongly connected component
can be on a cycle, so every other field is kept. Inside a component, records
are ordered by their folder's rank and then path, and every field pointing
forward or at itself in that order is cut; then each cut field, in a fixed
order, is restored if restoring it closes no cycle. What is left cut is
minimal: each field in it breaks some cycle.

Folder rank: the folder that new records elsewhere point at most (net of its
own pointers out) comes first. For authors <- books with a few authors
pointing back at their books, that cuts the few ``author.featured_book``
fields rather than the many ``book.author`` ones, and books wait one wave
for their authors: two waves, and only the few cut fields in backfill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Graph = Mapping[str, Mapping[str, frozenset[str]]]
"""path -> field -> the new records (paths) that field points at."""


def cycle_breaking_fields(graph: Graph) -> dict[str, frozenset[str]]:
    """path -> the fields of that new record to defer to the backfill (only paths with some)."""
    rank = _folder_rank(graph)
    order = {path: (rank[_folder(path)], path) for path in graph}
    cut: dict[str, set[str]] = {}
    for component in _components(graph):
        if len(component) == 1:
            (path,) = component
            loops = {f for f, targets in graph[path].items() if path in targets}
            if loops:
                cut[path] = loops
            continue
        members = set(component)
        candidates = [
            (path, field)
            for path in sorted(component, key=order.__getitem__)
            for field, targets in sorted(graph[path].items())
            if any(t in members and order[t] >= order[path] for t in targets)
        ]
        kept = _inner_edges(graph, members, {c for c in candidates})
        for path, field in candidates:
            targets = graph[path][field] & members
            if path in targets or any(_reaches(kept, t, path) for t in targets):
                cut.setdefault(path, set()).add(field)
            else:
                kept.setdefault(path, set()).update(targets)
    return {path: frozenset(fields) for path, fields in cut.items()}


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _folder_rank(graph: Graph) -> dict[str, int]:
    """Folders by how much other folders' new records point at theirs, net of pointers out."""
    score: dict[str, int] = {_folder(path): 0 for path in graph}
    for path, fields in graph.items():
        source = _folder(path)
        for targets in fields.values():
            for target in targets:
                if _folder(target) != source:
                    score[_folder(target)] += 1
                    score[source] -= 1
    ranked = sorted(score, key=lambda folder: (-score[folder], folder))
    return {folder: index for index, folder in enumerate(ranked)}


def _inner_edges(
    graph: Graph, members: set[str], without: set[tuple[str, str]]
) -> dict[str, set[str]]:
    """The component's edges, except those of the fields in ``without``."""
    edges: dict[str, set[str]] = {}
    for path in members:
        for field, targets in graph[path].items():
            if (path, field) not in without:
                edges.setdefault(path, set()).update(targets & members)
    return edges


def _reaches(edges: Mapping[str, Iterable[str]], start: str, goal: str) -> bool:
    seen = {start}
    stack = [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _components(graph: Graph) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative; paths in sorted order)."""
    successors = {
        path: sorted({t for targets in fields.values() for t in targets if t in graph})
        for path, fields in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            nexts = successors[node]
            if child < len(nexts):
                work.append((node, child + 1))
                nxt = nexts[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components
