"""Push mode's throughput: pushes per second against a local provider that answers done at once
(a real HTTP server on loopback, tests/push_provider.py), beside the same number of reports
sent one per request to the report endpoint (gunicorn, 8 clients), in the same run.

    make bench-push          (or: python bench/push.py --tasks 3000)

ratio = pushes/s / reports/s (target >= 0.5): what a pushed result costs against a pulled
one reported the seed's way.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from _http import REPORT, Client, free_port, in_threads, serving, split
from _setup import ROOT, clear_redis, django_for_bench, truncate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8, help="report clients (baseline)")
    opts = parser.parse_args()
    token = secrets.token_urlsafe(24)
    provider_port = free_port()
    os.environ.update(
        PROVIDER_TOKEN=token,
        PROVIDER_PUSH_URL=f"http://127.0.0.1:{provider_port}/push",
        PUSH_ALLOW_HTTP="1",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    prefix = django_for_bench()

    from django.utils import timezone

    from orders.models import Order
    from telegram_tasks import claims
    from telegram_tasks.api import push_transport
    from telegram_tasks.links import normalize_link
    from telegram_tasks.models import TelegramAccount, TelegramTask
    from telegram_tasks.services import tasks_generate, tasks_pull, tasks_push

    n = opts.tasks

    def world(mode: str) -> None:
        truncate(TelegramTask, Order, TelegramAccount)
        clear_redis(prefix)
        claims.mark_state(f"bench-{prefix}")
        TelegramAccount.objects.bulk_create(
            TelegramAccount(provider_account_id=f"bench_{i}", phone=f"+1{i:09d}") for i in range(n)
        )
        targets = [normalize_link(f"t.me/donebench{i:05d}/1") for i in range(n)]
        Order.objects.bulk_create(
            Order(action="view", link=t.link, post_id=t.post_id, link_hash=t.link_hash,
                  quantity=1, remains=1, execution_mode=mode)
            for t in targets
        )  # fmt: skip
        made = 0
        while made < n:
            created = tasks_generate(limit=1000, now=timezone.now()).created
            if not created:
                break
            made += created
        assert made == n, f"generated {made} of {n}"

    provider = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "push_provider.py"), str(provider_port),
         "http://127.0.0.1:9", token, os.devnull],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert provider.stdout.readline().strip() == "ready"
        # --- push ------------------------------------------------------------------------------
        world("push")
        tasks_push(
            now=timezone.now(), deliver=push_transport.deliver, limit=1
        )  # warm the pooled client
        t0 = time.perf_counter()
        while True:
            summary = tasks_push(now=timezone.now(), deliver=push_transport.deliver)
            if not summary.leased:
                break
        push_s = time.perf_counter() - t0
        done = TelegramTask.objects.filter(status="done").count()
        assert done == n, f"pushed {done} of {n}"
        # --- the same number of single reports through the report endpoint -------------------
        world("pull")
        ids = []
        while len(ids) < n:
            got = tasks_pull(limit=1000, now=timezone.now()).tasks
            if not got:
                break
            ids += [t["task_id"] for t in got]
        env = dict(os.environ, DEBUG="1", TG_KEY_PREFIX=prefix)
        with serving(env) as (port, _):

            def work(chunk: Sequence[Any]) -> None:
                client = Client(port, token)
                for task_id in chunk:
                    status, body = client.post(REPORT, {"task_id": task_id, "state": "done"})
                    assert status == 200 and body["status"] == "done", (status, body)
                client.close()

            report_s = in_threads(split(ids, opts.threads), work)
        assert TelegramTask.objects.filter(status="done").count() == n
    finally:
        provider.kill()
        truncate(TelegramTask, Order, TelegramAccount)
        clear_redis(prefix)
    pushes, reports = n / push_s, n / report_s
    print(f"tasks={n} push concurrency={os.environ.get('PUSH_CONCURRENCY', 16)}")
    print(f"  push:    {push_s:.3f} s, {pushes:,.0f} pushes/s (dispatcher -> local provider)")
    print(f"  reports: {report_s:.3f} s, {reports:,.0f} reports/s (one per request, "
          f"{opts.threads} clients)")  # fmt: skip
    print(f"  ratio (pushes/s / reports/s): {pushes / reports:.2f}  target >= 0.5")


if __name__ == "__main__":
    main()
