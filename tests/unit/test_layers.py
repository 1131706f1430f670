"""The package points one way, has no import circle, and keeps its modules small.

Layers, bottom to top: ``errors`` and ``keys``, ``settings``, ``events``; then ``data``;
then ``models`` and ``state`` (which may read ``data``, not the reverse); then
``serving``; then the processes: ``worker``, ``producer``, ``http`` (which sends events
through the producer), ``cli``; the package root on top. Every import is
counted, those inside functions included; only ``if TYPE_CHECKING:`` blocks are skipped.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "streamrec"

#: Top-level part -> rank; an import must not point to a higher rank.
RANK = {
    "errors": 0, "keys": 0, "settings": 1, "metrics": 1, "events": 2,
    "data": 3, "models": 4, "state": 4,
    "serving": 5,
    "worker": 6, "producer": 6, "http": 6,
    "cli": 7, "__init__": 8, "__main__": 8,
}  # fmt: skip
#: Same-rank imports that are allowed (importer part -> imported parts).
SIDEWAYS: dict[str, set[str]] = {"http": {"producer"}}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """The streamrec modules ``path`` imports (``from streamrec import keys`` counts as
    ``streamrec.keys``), outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("streamrec")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "streamrec":
                found |= {f"streamrec.{a.name}" for a in node.names}
            elif node.module.startswith("streamrec."):
                found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in imports(path):
            while target not in modules and "." in target:  # a name imported from a module
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def test_every_part_has_a_rank() -> None:
    parts = {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(RANK), parts - set(RANK)


def test_imports_point_down_only() -> None:
    wrong = []
    for importer, targets in graph().items():
        a = part_of(importer)
        for target in targets:
            b = part_of(target)
            if a == b or b in SIDEWAYS.get(a, set()):
                continue
            if RANK[b] >= RANK[a]:
                wrong.append(f"{importer} -> {target}")
    assert wrong == []


def test_no_import_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert circles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines (split it)"
