"""The turn of each order whose tasks take its params in turn (a mix of reactions)."""

import django.db.models.deletion
from django.db import migrations, models

from telegram_tasks.conf import order_model_label


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(order_model_label()),
        ("telegram_tasks", "0017_pass_runs_unsubscribe_without_order"),
    ]

    operations = [
        migrations.CreateModel(
            name="OrderTurn",
            fields=[
                (
                    "order",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="turn",
                        serialize=False,
                        to=order_model_label(),
                    ),
                ),
                ("made", models.PositiveBigIntegerField(default=0)),
            ],
            options={
                "db_table": "telegram_order_turns",
            },
        ),
    ]
