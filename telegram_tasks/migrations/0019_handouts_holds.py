"""The operator's view, second pass: each task's hand-out history (``handouts``: nullable, no
default, so adding it rewrites nothing), why and since when an account is held, and an index of
each order's failed tasks (the order list and page count them)."""

from django.db import migrations, models

from telegram_tasks.conf import order_model_label


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(order_model_label()),
        ("telegram_tasks", "0018_order_turns"),
    ]

    operations = [
        migrations.AddField(
            model_name="telegramaccount",
            name="held_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="telegramaccount",
            name="hold_reason",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="telegramtask",
            name="handouts",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="telegramtask",
            index=models.Index(
                condition=models.Q(("status", "failed")),
                fields=["order"],
                name="tg_task_order_failed",
            ),
        ),
    ]
