"""Routing: a service and an order may be limited to some provider fleets (none: any)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0012_end_reason"),
        ("telegram_tasks", "0021_providers"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="providers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Only these providers' accounts get its tasks (none selected: any provider).",
                related_name="orders",
                to="telegram_tasks.provider",
            ),
        ),
        migrations.AddField(
            model_name="service",
            name="providers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Only these providers' accounts do its orders (none selected: any provider).",
                related_name="services",
                to="telegram_tasks.provider",
            ),
        ),
    ]
