"""The balance ledger is append-only in the database itself (a trigger refuses UPDATE and
DELETE of its rows), and the settle sweep runs every minute in the database scheduler."""

from django.db import migrations

NAME = "orders: settle ended panel orders"

APPEND_ONLY = """
CREATE FUNCTION panel_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'panel_balance_ledger is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER panel_ledger_append_only BEFORE UPDATE OR DELETE ON panel_balance_ledger
    FOR EACH ROW EXECUTE FUNCTION panel_ledger_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS panel_ledger_append_only ON panel_balance_ledger;
DROP FUNCTION IF EXISTS panel_ledger_append_only();
"""


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": "orders.settle", "interval": every, "enabled": True,
                  "description": "Created by orders.0010; pause or retime it here."},
    )  # fmt: skip


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0009_panel"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunSQL(APPEND_ONLY, DROP),
        migrations.RunPython(create, remove),
    ]
