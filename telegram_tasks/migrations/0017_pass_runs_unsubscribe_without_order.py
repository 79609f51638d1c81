"""When each periodic pass last ran and succeeded (``PassRun``); tasks without an order (an
automatic unsubscribe whose subscribe order was deleted still runs: the column loses NOT NULL,
a catalogue change only); the checkpoint remembers the Redis nodes' runs (heal only after a
restart or a failover) and when a ROLLBACK was skipped (the sweep)."""

import django.db.models.deletion
from django.db import migrations, models

from telegram_tasks.conf import order_model_label


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(order_model_label()),
        ("telegram_tasks", "0016_operators_view"),
    ]

    operations = [
        migrations.CreateModel(
            name="PassRun",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("last_run_at", models.DateTimeField()),
                ("last_success_at", models.DateTimeField(blank=True, null=True)),
                ("last_seconds", models.FloatField(default=0.0)),
                ("last_error", models.TextField(blank=True, default="")),
                ("runs", models.PositiveBigIntegerField(default=0)),
                ("failures", models.PositiveBigIntegerField(default=0)),
            ],
            options={"db_table": "telegram_pass_runs"},
        ),
        migrations.AddField(
            model_name="claimscheckpoint",
            name="nodes",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="claimscheckpoint",
            name="sweep_from",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="telegramtask",
            name="order",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="telegram_tasks",
                to=order_model_label(),
            ),
        ),
    ]
