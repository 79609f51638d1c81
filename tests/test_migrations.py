import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_reaction_order_made_before_params_gets_the_documented_default():
    """orders.0011: an existing reaction order cannot be performed without its emoji; it gets a
    thumbs-up and goes on. Other orders keep empty params."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("orders", "0010_ledger_append_only_settle_schedule")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("orders", "Order")
    common = {"quantity": 2, "remains": 2, "link_hash": "h" * 64}
    reaction = old.objects.create(action="reaction", link="https://t.me/durov", post_id=4, **common)
    view = old.objects.create(action="view", link="https://t.me/durov", post_id=5, **common)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # orders.0011 and on
    from orders.models import Order

    assert Order.objects.get(pk=reaction.pk).params == {"reactions": ["👍"]}
    assert Order.objects.get(pk=view.pk).params == {}
