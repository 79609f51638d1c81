"""The host's Celery app. No django-celery-beat here: the passes' schedule comes from the app."""

import os

from celery import Celery

from telegram_tasks.schedule import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")

app = Celery("hostsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {**app.conf.beat_schedule, **BEAT_SCHEDULE}
