"""Several provider fleets: providers and their hashed tokens as rows. A default provider is
made here and owns everything that exists (accounts, tasks, the rollup's counts); PROVIDER_TOKEN
authenticates it, so an install upgrades with no change from anyone.

The provider columns are added with the default provider's id as a constant default — which
PostgreSQL stores in the catalogue instead of rewriting the table, however large the ledger —
and the default is dropped at once: from here on every writer names the provider. The task
queues' partial indexes are rebuilt led by the provider."""

import django.db.models.deletion
from django.db import migrations, models

import telegram_tasks.providers
from telegram_tasks.conf import order_model_label

# (table, whether the column is a FOREIGN KEY in the database)
COLUMNS = (
    ("telegram_accounts", True),
    ("telegram_tasks", False),
    ("telegram_task_hours", False),
    ("telegram_task_totals", False),
)


def add_provider_columns(apps, schema_editor):
    Provider = apps.get_model("telegram_tasks", "Provider")
    default = Provider.objects.filter(is_default=True).first() or Provider.objects.create(
        name=telegram_tasks.providers.DEFAULT_NAME, enabled=True, is_default=True
    )
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table, constrained in COLUMNS:
            cursor.execute(
                f"ALTER TABLE {quote(table)} ADD COLUMN provider_id bigint NOT NULL "
                f"DEFAULT {int(default.pk)}"
            )
            cursor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN provider_id DROP DEFAULT")
            if constrained:
                cursor.execute(
                    f"ALTER TABLE {quote(table)} ADD CONSTRAINT "
                    f"{quote(table + '_provider_id_fk_telegram_providers_id')} "
                    "FOREIGN KEY (provider_id) REFERENCES telegram_providers (id) "
                    "DEFERRABLE INITIALLY DEFERRED"
                )


def drop_provider_columns(apps, schema_editor):
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table, _ in COLUMNS:
            cursor.execute(f"ALTER TABLE {quote(table)} DROP COLUMN provider_id")


def provider_field(**kwargs):
    return models.ForeignKey(
        to="telegram_tasks.provider", related_name=kwargs.pop("related_name", "+"), **kwargs
    )


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(order_model_label()),
        ("telegram_tasks", "0020_dashboard_ranges"),
    ]

    operations = [
        migrations.CreateModel(
            name="Provider",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=64, unique=True)),
                ("enabled", models.BooleanField(default=True)),
                ("is_default", models.BooleanField(default=False, editable=False)),
                ("push_url", models.CharField(blank=True, default="", max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_seen_at", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={
                "db_table": "telegram_providers",
                "ordering": ["id"],
                "permissions": [
                    ("manage_provider", "Can add and revoke tokens, disable and enable")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("is_default", True)),
                        fields=("is_default",),
                        name="tg_provider_one_default",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ProviderToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("prefix", models.CharField(max_length=16, unique=True)),
                ("digest", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField()),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "provider",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tokens",
                        to="telegram_tasks.provider",
                    ),
                ),
            ],
            options={"db_table": "telegram_provider_tokens", "ordering": ["provider_id", "id"]},
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(add_provider_columns, drop_provider_columns),
            ],
            state_operations=[
                migrations.AddField(
                    model_name="telegramaccount",
                    name="provider",
                    field=provider_field(
                        db_index=False,
                        default=telegram_tasks.providers.default_provider_id,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="accounts",
                    ),
                ),
                migrations.AddField(
                    model_name="telegramtask",
                    name="provider",
                    field=provider_field(
                        db_constraint=False,
                        db_index=False,
                        default=telegram_tasks.providers.default_provider_id,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                    ),
                ),
                migrations.AddField(
                    model_name="taskhour",
                    name="provider",
                    field=provider_field(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                    ),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="tasktotal",
                    name="provider",
                    field=provider_field(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                    ),
                    preserve_default=False,
                ),
            ],
        ),
        # provider_account_id: unique per provider, no longer across them.
        migrations.AlterField(
            model_name="telegramaccount",
            name="provider_account_id",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddConstraint(
            model_name="telegramaccount",
            constraint=models.UniqueConstraint(
                fields=("provider", "provider_account_id"), name="tg_account_provider_unique"
            ),
        ),
        # The rollup counts per provider.
        migrations.RemoveConstraint(model_name="taskhour", name="tg_task_hour_unique"),
        migrations.AddConstraint(
            model_name="taskhour",
            constraint=models.UniqueConstraint(
                fields=("hour", "action", "outcome", "reason", "provider"),
                name="tg_task_hour_provider_unique",
            ),
        ),
        migrations.RemoveConstraint(model_name="tasktotal", name="tg_task_total_unique"),
        migrations.AddConstraint(
            model_name="tasktotal",
            constraint=models.UniqueConstraint(
                fields=("action", "outcome", "reason", "provider"),
                name="tg_task_total_provider_unique",
            ),
        ),
        # Each provider's queues on indexes of their own (the new ones first: a queue is never
        # without an index while this runs).
        migrations.AddIndex(
            model_name="telegramtask",
            index=models.Index(
                condition=models.Q(("execution_mode", "pull"), ("status", "queued")),
                fields=["provider", "available_at", "id"],
                name="tg_task_pull_queue",
            ),
        ),
        migrations.AddIndex(
            model_name="telegramtask",
            index=models.Index(
                condition=models.Q(("execution_mode", "push"), ("status", "queued")),
                fields=["provider", "available_at", "id"],
                name="tg_task_push_queue",
            ),
        ),
        migrations.AddIndex(
            model_name="telegramtask",
            index=models.Index(
                condition=models.Q(("status", "queued")),
                fields=["provider", "provider_account_id", "available_at", "id"],
                name="tg_task_queue_account",
            ),
        ),
        migrations.RemoveIndex(model_name="telegramtask", name="tg_task_pull_queued_account"),
        migrations.RemoveIndex(model_name="telegramtask", name="tg_task_pull_queued"),
        migrations.RemoveIndex(model_name="telegramtask", name="tg_task_push_queued"),
    ]
