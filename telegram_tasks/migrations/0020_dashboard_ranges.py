"""The dashboard's short ranges: done and failed per minute (kept a few hours), and each
starved order's slots starved per ten minutes (the last hour and its trend)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("telegram_tasks", "0019_handouts_holds"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderpassstats",
            name="starved_recent",
            field=models.JSONField(default=dict),
        ),
        migrations.CreateModel(
            name="TaskMinute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("minute", models.DateTimeField()),
                ("action", models.CharField(max_length=50)),
                (
                    "outcome",
                    models.CharField(
                        choices=[("created", "Created"), ("done", "Done"), ("failed", "Failed")],
                        max_length=8,
                    ),
                ),
                ("reason", models.CharField(blank=True, default="", max_length=64)),
                ("count", models.PositiveBigIntegerField(default=0)),
            ],
            options={
                "db_table": "telegram_task_minutes",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("minute", "action", "outcome", "reason"),
                        name="tg_task_minute_unique",
                    )
                ],
            },
        ),
    ]
