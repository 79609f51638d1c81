"""Why the broker ended an order (a failure reason), for the operator's list and page."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0011_order_params"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="end_reason",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
    ]
