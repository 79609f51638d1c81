"""The passes' schedule for Celery beat, for a project that runs beat without django-celery-beat's
database scheduler (with it, the app's migrations create the same entries in the database, where
an operator pauses or retimes them in the admin). Importable before Django is set up, so a
project's Celery module can use it:

    from telegram_tasks.schedule import BEAT_SCHEDULE

    app.conf.beat_schedule = {**app.conf.beat_schedule, **BEAT_SCHEDULE}
"""

from __future__ import annotations

from typing import Any

GENERATE = "telegram_tasks.generate"
HOUSEKEEP = "telegram_tasks.housekeep"
PUSH = "telegram_tasks.push"

# Entry names as the migrations name the database entries; intervals in seconds.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "telegram_tasks: generate tasks": {"task": GENERATE, "schedule": 60.0},
    "telegram_tasks: housekeeping": {"task": HOUSEKEEP, "schedule": 60.0},
    "telegram_tasks: push dispatch": {"task": PUSH, "schedule": 5.0},
}
