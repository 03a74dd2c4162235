"""The package's shape: stages import downwards (the import contract in pyproject.toml), no
import cycles between modules, and no module over the size goal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leakaudit"
MAX_LINES = 450
KNOWN_CYCLES: list[set[str]] = []  # none: a new circle fails the test


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # every import counts: inside functions and under TYPE_CHECKING too (grimp sees both)
    return grimp.build_graph("leakaudit", cache_dir=None)


def test_stages_import_downwards() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    run = subprocess.run([*cmd, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's strongly connected components of the module import graph (iterative)."""
    succ = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root in sorted(succ):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            nexts = succ.get(node, [])
            if i < len(nexts):
                work.append((node, i + 1))
                child = nexts[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def test_strongly_connected_finds_a_cycle() -> None:
    class Fake:
        modules = frozenset({"a", "b", "c"})

        def find_modules_directly_imported_by(self, m: str) -> set[str]:
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[m]

    assert sorted(map(sorted, strongly_connected(Fake()))) == [["a", "b"], ["c"]]


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    assert [c for c in cycles if set(c) not in KNOWN_CYCLES] == []


def test_modules_within_size_goal() -> None:
    over = {
        str(p.relative_to(ROOT)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert over == {}
