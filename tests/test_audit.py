"""`make audit` (scripts/audit.py) reads pip-audit's verdict: a published advisory fails it;
an advisory source it cannot reach does not (unless AUDIT_STRICT=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.live import ROOT


def audit(tmp_path, report: object, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "pip-audit"
    out = report if isinstance(report, str) else json.dumps(report)
    fake.write_text(f"#!{sys.executable}\nprint({out!r})\n")
    fake.chmod(0o755)
    return subprocess.run(
        [sys.executable, "scripts/audit.py"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PIP_AUDIT": str(fake), "AUDIT_STRICT": "", **env}, timeout=60,
    )  # fmt: skip


def test_a_published_advisory_fails_the_audit(tmp_path):
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["5.2.99"], "aliases": [], "description": ""}
    ran = audit(tmp_path, {"dependencies": [
        {"name": "django", "version": "5.2.19", "vulns": [vuln]},
        {"name": "redis", "version": "8.1.0", "vulns": []},
    ], "fixes": []})  # fmt: skip
    assert ran.returncode == 1
    assert "django 5.2.19: PYSEC-2099-1 (fixed in: 5.2.99)" in ran.stdout


@pytest.mark.parametrize("strict", ["", "1"])
def test_an_unreachable_advisory_source_fails_only_a_strict_audit(tmp_path, strict):
    skipped = {"dependencies": [
        {"name": "django", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ], "fixes": []}  # fmt: skip
    for report in (skipped, "not json: connection refused"):
        ran = audit(tmp_path, report, AUDIT_STRICT=strict)
        assert ran.returncode == (1 if strict else 0), ran.stderr
        assert "audit:" in ran.stderr


def test_a_clean_audit_passes(tmp_path):
    ran = audit(tmp_path, {"dependencies": [{"name": "redis", "version": "8.1.0", "vulns": []}]})
    assert ran.returncode == 0 and "1 packages audited" in ran.stdout
