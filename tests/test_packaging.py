"""The wheel pyproject.toml builds: every file of the app, nothing else of the repository, and
the dependencies the app imports (no more, no fewer), in ranges that hold the pinned versions."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.wheel import ROOT, build, source_files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    with zipfile.ZipFile(build(tmp_path_factory.mktemp("wheel"))) as built:
        yield built


def _metadata(wheel: zipfile.ZipFile):
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def _requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    return [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist")]


def test_the_wheel_holds_every_file_of_the_app_and_nothing_else(wheel):
    shipped = {n for n in wheel.namelist() if ".dist-info/" not in n}
    app = {f for f in source_files() if f.startswith("telegram_tasks/")}
    assert shipped == app
    # What a host cannot run without, named (the comparison above covers it; this says why).
    for needed in (
        "telegram_tasks/migrations/0001_initial.py",
        "telegram_tasks/claims/lua/reserve.lua",
        "telegram_tasks/templates/admin/telegram_tasks/dashboard.html",
        "telegram_tasks/static/telegram_tasks/vendor/chart-4.6.1.umd.min.js",
        "telegram_tasks/static/telegram_tasks/vendor/chart-4.6.1.LICENSE.md",
    ):
        assert needed in shipped
    assert not {n.split("/")[0] for n in shipped} - {"telegram_tasks"}


def _imported_distributions() -> set[str]:
    """The distributions of every module the app's code imports, anywhere in it."""
    modules: set[str] = set()
    for path in (ROOT / "telegram_tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= {"telegram_tasks", *sys.stdlib_module_names}
    owners = importlib.metadata.packages_distributions()
    unknown = sorted(m for m in modules if m not in owners)
    assert not unknown, f"imports no installed distribution provides: {unknown}"
    return {canonicalize_name(d) for m in modules for d in owners[m]}


def test_the_wheel_requires_what_the_app_imports(wheel):
    required = {canonicalize_name(r.name) for r in _requirements(wheel) if not r.marker}
    assert required == _imported_distributions()
    # Optional: the database beat schedule its migrations fill in when installed.
    extras = {canonicalize_name(r.name) for r in _requirements(wheel) if r.marker}
    assert extras == {"django-celery-beat", "hiredis"}


def test_the_pinned_versions_satisfy_the_wheels_ranges(wheel):
    pins = {}
    for line in Path(ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    for req in _requirements(wheel):
        pinned = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(pinned), f"{req} excludes the pinned {pinned}"
