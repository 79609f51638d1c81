"""Build the telegram_tasks wheel (pyproject.toml) from a clean copy of the working tree.

    python scripts/wheel.py [OUT_DIR]      (default: dist/)

The same as `pip wheel --no-deps .`, but from a copy of the files git knows (tracked, or new and
not ignored): setuptools builds in the source tree and keeps a build/ folder whose stale files
(a module since moved or deleted) would end up in the next wheel. Used by tests/test_packaging.py
and tests/host/run.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_files() -> list[str]:
    """The working tree's files as a fresh clone with these edits would hold them."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    return sorted(p for p in out.decode().split("\0") if p and (ROOT / p).is_file())


def build(out_dir: Path) -> Path:
    """Build the wheel into ``out_dir``; its path."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tg-wheel-") as tmp:
        src = Path(tmp) / "src"
        for name in source_files():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
        before = set(out_dir.glob("*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--disable-pip-version-check", "--wheel-dir", str(out_dir), str(src)],
            check=True,
        )  # fmt: skip
    built = sorted(set(out_dir.glob("django_telegram_tasks-*.whl")) - before) or sorted(
        out_dir.glob("django_telegram_tasks-*.whl")
    )
    if not built:
        raise RuntimeError(f"no wheel was built in {out_dir}")
    return built[-1]


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"))
