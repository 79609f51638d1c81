"""Housekeeping every minute next to generation, in the database scheduler (pause or retime it
in the admin)."""

from django.apps import apps as installed
from django.db import migrations

# Without django-celery-beat the project schedules the passes itself (see 0002).
BEAT = installed.is_installed("django_celery_beat")

NAME = "telegram_tasks: housekeeping"


def create(apps, schema_editor):
    if not BEAT:
        return
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "telegram_tasks.housekeep", "interval": every, "enabled": True,
                  "description": "Created by telegram_tasks.0004; pause or retime it here."},
    )  # fmt: skip


def remove(apps, schema_editor):
    if not BEAT:
        return
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("telegram_tasks", "0003_lease_started")]

    operations = [migrations.RunPython(create, remove)]
