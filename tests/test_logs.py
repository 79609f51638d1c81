"""Structured logs: one line per pass and per failure report that took effect, with fields a
log pipeline filters on; LOG_FORMAT=json writes each record as one JSON object."""

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import TestCase

from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def report(*reports, now=T0):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def events(caplog, name):
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def test_a_pass_logs_one_line_with_its_counts(caplog):
    make_accounts(2)
    make_order(action="view", link="t.me/durov/7", quantity=5)
    with caplog.at_level(logging.INFO):
        summary = tasks_generate(limit=10, now=T0)
    [line] = events(caplog, "generation_pass")
    assert line.tasks_created == summary.created == 2
    assert (line.starved_orders, line.starved_slots) == (
        summary.starved_orders,
        summary.starved_slots,
    )
    assert line.examined == 1 and isinstance(line.refusals, dict)
    assert "created=2" in line.getMessage()


def test_each_failure_report_logs_once_with_its_reason(caplog):
    make_accounts(2)
    order = make_order(action="view", link="t.me/durov/7", quantity=2)
    tasks_generate(limit=10, now=T0)
    first, second = tasks_pull(limit=10, now=T0).tasks
    with caplog.at_level(logging.INFO):
        report(
            ReportIn(first["task_id"], "failed", error_code="USER_DEACTIVATED"),
            ReportIn(second["task_id"], "failed", retry_after=30),
            ReportIn(first["task_id"], "failed", error_code="USER_DEACTIVATED"),  # a repeat
        )
        report(ReportIn(first["task_id"], "failed", error_code="USER_DEACTIVATED"))  # a retry
    lines = events(caplog, "report_failed")
    assert sorted((r.task_id, r.outcome) for r in lines) == sorted(
        [(first["task_id"], "failed"), (second["task_id"], "retry")]
    )
    banned = next(r for r in lines if r.outcome == "failed")
    assert (banned.order_id, banned.action, banned.error_code) == (
        order.pk,
        "view",
        "USER_DEACTIVATED",
    )
    assert banned.reason == "account_dead" and banned.attempt == 1
    assert next(r for r in lines if r.outcome == "retry").retry_after == 30


def test_done_reports_log_nothing(caplog):
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    with caplog.at_level(logging.INFO):
        report(ReportIn(task["task_id"], "done"), now=T0 + timedelta(seconds=1))
    assert not events(caplog, "report_failed")


def test_json_format_writes_one_object_per_line_with_the_fields():
    # A separate interpreter: LOGGING is read once, when Django is set up.
    code = (
        "import django, logging; django.setup();"
        "from telegram_tasks.logs import log_fields;"
        "from telegram_tasks.services.generation import GenerationSummary;"
        "s = GenerationSummary(examined=3, created=2); s.refusals['cooldown'] += 1;"
        "logging.getLogger('x').info('pass: %s', s.line(), extra=log_fields('generation_pass', s))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "json", "DEBUG": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
    )
    [record] = [json.loads(line) for line in out.stderr.splitlines()]
    assert record["event"] == "generation_pass" and record["level"] == "INFO"
    assert (record["examined"], record["tasks_created"]) == (3, 2)
    assert record["refusals"] == {"cooldown": 1}
    assert record["message"].startswith("pass: examined=3 created=2")
