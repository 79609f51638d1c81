"""The small end-to-end simulation (sim/run.py) with both faults, as part of the suite. It
starts its own private PostgreSQL and Redis, so it restarts only servers it owns."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_simulation_keeps_every_invariant_through_redis_and_postgres_restarts():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "sim" / "run.py"), "--size", "small"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=230,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "checker: all invariants hold" in output
    assert "fault: Redis restarted empty" in output and "fault: PostgreSQL restarted" in output
