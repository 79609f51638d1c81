"""Order.params: what the provider needs beyond the link (a reaction's emoji, a poll's option,
a bot's start parameter). A reaction order made before it had none, and a reaction cannot be
performed without its emoji: it gets the documented default, a thumbs-up ({"reactions": ["👍"]},
docs/contract.md), and goes on as it was."""

from django.db import migrations, models

DEFAULT_REACTIONS = {"reactions": ["👍"]}


def give_reactions_their_default(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Order.objects.filter(action="reaction").exclude(params__has_key="reactions").update(
        params=DEFAULT_REACTIONS
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0010_ledger_append_only_settle_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="params",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(give_reactions_their_default, migrations.RunPython.noop),
    ]
