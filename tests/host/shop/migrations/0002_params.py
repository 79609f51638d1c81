from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="purchase",
            name="params",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
