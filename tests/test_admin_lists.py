"""The admin's lists stay flat with a large ledger: exact searches on indexed keys, filters
whose choices are known without reading the table, a drill-down by key ranges, capped
counts."""

import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from telegram_tasks.admin import lists
from telegram_tasks.models import TelegramTask, new_ulid
from tests.factories import make_account, make_order, make_task

pytestmark = pytest.mark.django_db
TASKS = "/admin/telegram_tasks/telegramtask/"


def ids(response) -> set[str]:
    return {r.pk for r in response.context["cl"].result_list}


@pytest.fixture
def world():
    account = make_account(provider_account_id="acc-77")
    other = make_account()
    order = make_order(action="view", link="t.me/durov/1", quantity=9)
    mine = make_task(order, account, provider_task_id="prov-1")
    theirs = make_task(make_order(action="view", link="t.me/durov/2"), other)
    failed = make_task(order, other, status="failed", failure_reason="lock_lost",
                       finished_at=datetime(2026, 3, 10, tzinfo=UTC))  # fmt: skip
    return {"account": account, "order": order, "mine": mine, "theirs": theirs, "failed": failed}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("mine-id", {"mine"}),
        ("order-id", {"mine", "failed"}),
        ("acc-77", {"mine"}),
        ("prov-1", {"mine"}),
        ("nothing-like-it", set()),
    ],
)
def test_task_search_is_on_exact_keys(admin_client, world, term, expected):
    term = {"mine-id": world["mine"].pk, "order-id": str(world["order"].pk)}.get(term, term)
    response = admin_client.get(TASKS, {"q": term})
    assert response.status_code == 200
    assert ids(response) == {world[k].pk for k in expected}


def test_filters_offer_configured_choices_without_reading_the_table(admin_client, world):
    response = admin_client.get(TASKS, {"reason": "lock_lost"})
    assert ids(response) == {world["failed"].pk}
    assert ids(admin_client.get(TASKS, {"action": "view"})) == {
        world[k].pk for k in ("mine", "theirs", "failed")
    }
    page = admin_client.get(TASKS).content.decode()
    # The reasons in their groups: the groups, then the chosen group's reasons, seen or not.
    assert "?reason=group%3Aaccount" in page and "?reason=wait_too_long" not in page
    account = admin_client.get(TASKS, {"reason": "group:account"})
    assert "?reason=wait_too_long" in account.content.decode() and not ids(account)
    assert ids(admin_client.get(TASKS, {"reason": "group:time"})) == {world["failed"].pk}
    assert "?reason=lock_lost" in admin_client.get(TASKS, {"reason": "lock_lost"}).content.decode()


def test_every_failure_reason_is_in_one_group_and_has_words():
    from telegram_tasks.admin import reasons
    from telegram_tasks.failures import Reason

    grouped = [r for g in reasons.GROUPS for r in g.reasons]
    assert sorted(grouped) == sorted(Reason) and len(set(grouped)) == len(grouped)
    assert all(reasons.WORDS.get(r) for r in Reason)
    assert reasons.words("push_http_410") == "push: the provider refused it (HTTP 410)"
    assert reasons.group_of("push_http_410").key == "provider"


def test_drill_down_by_year_month_day_is_a_key_range(admin_client, world):
    march = TelegramTask.objects.create(
        id=lists.ulid_floor(datetime(2025, 3, 10, 8, tzinfo=UTC))[:10] + new_ulid()[10:],
        order=world["order"], action="view", link_hash="x", payload={},
    )  # fmt: skip
    years = admin_client.get(TASKS).content.decode()
    assert "?created=2025" in years and "?created=2026" in years
    months = admin_client.get(TASKS, {"created": "2025"}).content.decode()
    assert "?created=2025-03" in months
    assert ids(admin_client.get(TASKS, {"created": "2025-03-10"})) == {march.pk}
    assert ids(admin_client.get(TASKS, {"created": "2025"})) == {march.pk}


def test_counts_are_capped(admin_client, world, monkeypatch):
    monkeypatch.setattr(lists, "COUNT_CAP", 2)
    response = admin_client.get(TASKS, {"action": "view"})
    assert response.context["cl"].result_count == 2


def test_ulid_floor_orders_with_time():
    a = lists.ulid_floor(datetime(2026, 1, 1, tzinfo=UTC))
    assert lists.ulid_time(a) == datetime(2026, 1, 1, tzinfo=UTC)
    assert a < new_ulid()


def test_order_search_by_any_form_of_the_link(admin_client):
    order = make_order(action="view", link="https://t.me/Durov/5")
    make_order(action="view", link="t.me/durov/6")
    url = reverse("admin:orders_order_changelist")
    response = admin_client.get(url, {"q": "t.me/durov/5"})
    assert ids(response) == {order.pk}
    assert ids(admin_client.get(url, {"q": str(order.pk)})) == {order.pk}
    # A digit to str.isdigit() that int() refuses, and more digits than any id: no order.
    assert ids(admin_client.get(url, {"q": "²"})) == set()
    assert ids(admin_client.get(url, {"q": "9" * 30})) == set()


@pytest.mark.parametrize(
    ("status", "index"),
    [
        ("failed", "tg_task_failed"),
        ("done", "tg_task_finished"),
        # (Any of the queued tasks' own indexes: which one depends on the table's statistics.)
        ("queued", "tg_task_(queued_expiry|pull_queue|push_queue|queue_account) "),
        ("leased", "tg_task_pull_expired"),
        ("pending", "tg_task_pending"),
    ],
)
def test_a_status_filter_reads_that_status_index_newest_first(admin_client, world, status, index):
    """By the key, the newest rows of a rare status would be looked for through the whole
    history; each status is listed from its own index, and counted without the ordering."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(TASKS, {"status__exact": status}).status_code == 200
    on_tasks = [q["sql"] for q in queries if 'FROM "telegram_tasks"' in q["sql"]]
    count = next(q for q in on_tasks if q.startswith("SELECT COUNT(*)"))
    assert "ORDER BY" not in count
    listing = next(
        q for q in on_tasks if '"status" = ' in q and "ORDER BY" in q and "COUNT" not in q
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # the planner's view of a large table
        # As a list longer than a page asks for it.
        limit = "" if "LIMIT" in listing else " LIMIT 100"
        cursor.execute(f"EXPLAIN {listing}{limit}")
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert re.search(index, plan), plan
