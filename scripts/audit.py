"""`make audit`: the installed, pinned dependencies (this virtualenv: requirements.txt and
requirements-dev.txt with everything they pull in) against published advisories, with
pip-audit and its default source (PyPI's advisory data, which the Python Packaging Advisory
Database feeds).

It fails (exit 1) when an advisory names an installed version, listing each with the versions
that fix it. It does not fail when the advisory source cannot be asked: then it says how many
packages went unaudited and why, and exits 0, so CI never fails for a network it does not
control. AUDIT_STRICT=1 makes that a failure too (a machine that should reach PyPI).

    python scripts/audit.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# (Another pip-audit, by its path: the tests give a stand-in.)
PIP_AUDIT = os.environ.get("PIP_AUDIT") or str(Path(sys.executable).parent / "pip-audit")


def main() -> int:
    strict = os.environ.get("AUDIT_STRICT", "") not in ("", "0")
    ran = subprocess.run(
        [PIP_AUDIT, "--format", "json", "--progress-spinner", "off"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    try:
        report = json.loads(ran.stdout)
    except ValueError:
        print(f"audit: pip-audit could not run (exit {ran.returncode}):", file=sys.stderr)
        print(ran.stderr.strip()[-2000:], file=sys.stderr)
        return 1 if strict else 0
    found = [d for d in report["dependencies"] if d.get("vulns")]
    skipped = [d for d in report["dependencies"] if "skip_reason" in d]
    audited = len(report["dependencies"]) - len(skipped)
    for dep in found:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            print(f"audit: {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
    if found:
        print(f"audit: {len(found)} installed packages with published advisories", file=sys.stderr)
        return 1
    if skipped:
        why = skipped[0]["skip_reason"]
        print(f"audit: {len(skipped)} of {len(report['dependencies'])} packages not audited "
              f"(the advisory source did not know them or could not be reached; the first: "
              f"{why})", file=sys.stderr)  # fmt: skip
    if not audited:
        print("audit: NOT DONE: no package could be checked", file=sys.stderr)
        return 1 if strict else 0
    print(f"audit: {audited} packages audited, no published advisory names them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
