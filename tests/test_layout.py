"""The layout's rules, checked: the layering contracts (pyproject.toml, ``[tool.importlinter]``),
no import circle between the app's modules at import time, and no module grown past what one
reader takes in. Static: nothing here imports the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "telegram_tasks"
MOST_LINES = 450


def test_the_layering_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules() -> dict[str, Path]:
    return {module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.parts}


def type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module is imported: its top level, with the branches of
    ``if``/``try``/``with`` (not functions' or classes' bodies run later, nor TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not type_checking(node.test):
                yield from import_time_statements(node.body)
            yield from import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody):
                yield from import_time_statements(part)
            for handler in node.handlers:
                yield from import_time_statements(handler.body)
        elif isinstance(node, ast.With):
            yield from import_time_statements(node.body)
        elif isinstance(node, ast.ClassDef):
            yield from import_time_statements(node.body)  # a class body runs at import


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_at_import_time(name: str, path: Path, modules: set[str]) -> set[str]:
    """The app's modules that importing ``name`` runs first. Importing ``a.b.c`` runs ``a`` and
    ``a.b`` too, except the packages ``name`` is itself inside (already being imported)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in import_time_statements(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*up, base] if base else up)
        targets.add(base)
        targets.update(f"{base}.{alias.name}" for alias in node.names)
    inside = set(ancestors(name))
    found: set[str] = set()
    for target in targets:
        for candidate in [*ancestors(target), target]:
            if candidate in modules and candidate not in inside and candidate != name:
                found.add(candidate)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = app_modules()
    return {
        name: imported_at_import_time(name, path, set(modules)) for name, path in modules.items()
    }


def test_no_import_circle_between_the_apps_modules():
    assert circles(import_graph()) == []


def test_a_circle_is_found():
    """The check itself: a circle of two modules, and one through a package's __init__."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    graph = import_graph()
    graph["telegram_tasks.conf"].add("telegram_tasks.services.sql")  # services → … → conf
    assert any("telegram_tasks.conf" in circle for circle in circles(graph))


def test_no_module_is_longer_than_one_reader_takes_in():
    roots = [APP, ROOT / "sim", ROOT / "scripts"]
    long = {
        str(p.relative_to(ROOT)): n
        for root in roots
        for p in root.rglob("*.py")
        if "migrations" not in p.parts and (n := len(p.read_text().splitlines())) > MOST_LINES
    }
    assert long == {}
