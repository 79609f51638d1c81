"""Shared set-up for the benchmarks: a database of their own, migrated, and Django ready."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_for_bench() -> str:
    """Point Django at ``<db>_bench`` (created if missing) and a fresh Redis key prefix."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    import environ
    import psycopg

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tg_broker")
    cfg = environ.Env.db_url_config(url)
    bench_db = f"{cfg['NAME']}_bench"
    admin = psycopg.connect(
        host=cfg["HOST"], port=cfg["PORT"] or 5432, user=cfg["USER"], password=cfg["PASSWORD"],
        dbname="postgres", autocommit=True,
    )  # fmt: skip
    with admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [bench_db]
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{bench_db}"')
    os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + bench_db
    prefix = f"tgbench:{uuid.uuid4().hex[:8]}"
    os.environ["TG_KEY_PREFIX"] = prefix
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return prefix


def clear_redis(prefix: str) -> None:
    from telegram_tasks.claims.scripts import connection

    conn = connection()
    batch = []
    for key in conn.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            conn.delete(*batch)
            batch.clear()
    if batch:
        conn.delete(*batch)


def truncate(*models) -> None:
    """Empty tables without leaving dead rows behind (DELETE would bloat later rounds)."""
    from django.db import connection

    tables = ", ".join(m._meta.db_table for m in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def baseline_reserves(sizes: list[int], total: int, now, tag: str) -> float:
    """Seconds to send ``total`` EVALSHA calls of the reserve script alone, in pipelines of
    the given sizes, over the claims connection, on accounts where every one succeeds."""
    import time
    from datetime import timedelta

    from telegram_tasks.claims import Claim, Target
    from telegram_tasks.claims.operations import reserve_calls
    from telegram_tasks.claims.scripts import connection, sha, source

    conn = connection()
    conn.script_load(source("reserve"))
    batches, n = [], 0
    for size in sizes:
        take = min(size, total - n)
        if take <= 0:
            break
        claims = [Claim(50_000_000 + n + i, "view", Target("d" * 64, n + i), f"{tag}{n + i}")
                  for i in range(take)]  # fmt: skip
        batches.append(reserve_calls(claims, now, [now + timedelta(seconds=120)] * take))
        n += take
    t0 = time.perf_counter()
    for calls in batches:
        pipe = conn.pipeline(transaction=False)
        for _, keys, args in calls:
            pipe.evalsha(sha("reserve"), len(keys), *keys, *args)
        pipe.execute()
    return time.perf_counter() - t0
