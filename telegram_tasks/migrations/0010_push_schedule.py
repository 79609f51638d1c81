"""The push dispatcher every five seconds in the database scheduler (pause or retime it in the
admin). It leases nothing while no order is in push mode."""

from django.apps import apps as installed
from django.db import migrations

# Without django-celery-beat the project schedules the passes itself (see 0002).
BEAT = installed.is_installed("django_celery_beat")

NAME = "telegram_tasks: push dispatch"


def create(apps, schema_editor):
    if not BEAT:
        return
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "telegram_tasks.push", "interval": every, "enabled": True,
                  "description": "Created by telegram_tasks.0010; pause or retime it here."},
    )  # fmt: skip


def remove(apps, schema_editor):
    if not BEAT:
        return
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("telegram_tasks", "0009_push")]

    operations = [migrations.RunPython(create, remove)]
