"""The four rooms' arrows point inwards: parse every module's imports and check them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("domain", "application", "infrastructure", "interfaces")
ALLOWED_PROJECT = {
    "domain": {"domain"},
    "application": {"domain", "application"},
    "infrastructure": {"domain", "application", "infrastructure"},
    "interfaces": {"domain", "application", "infrastructure", "interfaces"},
}
# Third-party packages a room may not touch even indirectly by name.
FORBIDDEN_THIRD_PARTY = {
    "domain": {
        "psycopg",
        "psycopg_pool",
        "starlette",
        "httpx",
        "pydantic",
        "uvicorn",
        "sse_starlette",
        "pgserver",
        "prometheus_client",
        "rich",
    },
    "application": {
        "psycopg",
        "psycopg_pool",
        "starlette",
        "httpx",
        "uvicorn",
        "sse_starlette",
        "pgserver",
        "prometheus_client",
        "rich",
    },
}
DOMAIN_EVENTSOURCING = {"eventsourcing.domain"}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def modules_of(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", ROOMS)
def test_room_imports_point_inwards(room: str) -> None:
    wrong: list[str] = []
    for path in modules_of(room):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in ROOMS and top not in ALLOWED_PROJECT[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top in FORBIDDEN_THIRD_PARTY.get(room, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if room == "domain" and top == "eventsourcing" and name not in DOMAIN_EVENTSOURCING:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_the_rule_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The parser finds imports in both forms, so a wrong arrow cannot hide."""
    module = tmp_path / "m.py"
    module.write_text("import infrastructure.settings\nfrom interfaces.cli import main\n")
    assert imported_modules(module) == ["infrastructure.settings", "interfaces.cli"]


def test_every_room_has_modules() -> None:
    assert all(modules_of(room) for room in ROOMS)
