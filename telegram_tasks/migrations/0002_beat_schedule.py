"""The beat schedule lives in the database (django-celery-beat), so an operator can pause or
retime a pass in the admin; this migration creates it once. A project without django-celery-beat
schedules the passes itself (telegram_tasks.schedule, docs/reuse.md): then this does nothing."""

from django.apps import apps as installed
from django.db import migrations

BEAT = installed.is_installed("django_celery_beat")

SCHEDULES = [
    ("telegram_tasks: generate tasks", "telegram_tasks.generate", 60),
]


def create(apps, schema_editor):
    if not BEAT:
        return
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in SCHEDULES:
        every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": every, "enabled": True,
                      "description": "Created by telegram_tasks.0002; pause or retime it here."},
        )  # fmt: skip


def remove(apps, schema_editor):
    if not BEAT:
        return
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[n for n, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("telegram_tasks", "0001_initial"),
        *([("django_celery_beat", "0019_alter_periodictasks_options")] if BEAT else []),
    ]

    operations = [migrations.RunPython(create, remove)]
