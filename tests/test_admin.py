import pytest
from django.urls import reverse

from tests.factories import make_account, make_accounts, make_order, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects():
    order = make_order(action="view", link="t.me/durov/42", execution_meta={"note": "vip"})
    account = make_account(meta={"country": "NL"})
    task = make_task(order, account, result={"ok": True, "data": {"x": 1}})
    return {
        "orders_order": order,
        "telegram_tasks_telegramaccount": account,
        "telegram_tasks_telegramtask": task,
    }


@pytest.mark.parametrize(
    "model", ["orders_order", "telegram_tasks_telegramaccount", "telegram_tasks_telegramtask"]
)
def test_changelist_and_change_pages_render(admin_client, objects, model):
    obj = objects[model]
    changelist = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert changelist.status_code == 200
    assert str(obj.pk) in changelist.content.decode()
    filters = {
        "orders_order": ["?q=durov", "?status__exact=awaiting", "?action__exact=view"],
        "telegram_tasks_telegramaccount": ["?q=ext_", "?is_active__exact=1"],
        "telegram_tasks_telegramtask": ["?q=ext_", "?status__exact=queued", "?action__exact=view"],
    }
    for query in filters[model]:
        assert admin_client.get(reverse(f"admin:{model}_changelist") + query).status_code == 200
    change = admin_client.get(reverse(f"admin:{model}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_task_change_page_shows_formatted_json_and_no_inputs(admin_client, objects):
    task = objects["telegram_tasks_telegramtask"]
    body = admin_client.get(
        reverse("admin:telegram_tasks_telegramtask_change", args=[task.pk])
    ).content.decode()
    assert "<pre" in body and "&quot;ok&quot;: true" in body
    assert 'name="status"' not in body  # machine-written: read-only


def test_task_cannot_be_added_or_edited_by_post(admin_client, objects):
    task = objects["telegram_tasks_telegramtask"]
    assert admin_client.get(reverse("admin:telegram_tasks_telegramtask_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:telegram_tasks_telegramtask_change", args=[task.pk]), {"status": "done"}
    )
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == "queued"


def test_order_add_page_renders_and_creates_a_normalized_order(admin_client):
    make_accounts(3)
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 200
    response = admin_client.post(
        reverse("admin:orders_order_add"),
        {"action": "subscribe", "link": "https://t.me/Durov", "quantity": 3, "per_call": 1,
         "interval_seconds": 0, "priority": 0, "execution_mode": "pull", "execution_meta": "{}"},
    )  # fmt: skip
    assert response.status_code == 302
    from orders.models import Order

    order = Order.objects.get()
    assert (order.link, order.remains) == ("https://t.me/durov", 3)


def test_order_add_rejects_bad_link_with_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:orders_order_add"),
        {"action": "subscribe", "link": "https://example.com", "quantity": 3, "per_call": 1,
         "interval_seconds": 0, "priority": 0, "execution_mode": "pull", "execution_meta": "{}"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "not a Telegram link" in response.content.decode()


def test_order_change_page_locks_target_and_quantity(admin_client, objects):
    order = objects["orders_order"]
    body = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert 'name="quantity"' not in body and 'name="link"' not in body
    assert 'name="interval_seconds"' in body


def _post_action(admin_client, model, action, ids):
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return admin_client.post(
            reverse(f"admin:{model}_changelist"),
            {"action": action, "_selected_action": [str(i) for i in ids]},
            follow=True,
        )


def test_order_actions_cancel_pause_resume(admin_client):
    from django.utils import timezone

    from orders.models import Order
    from telegram_tasks.models import TelegramTask
    from telegram_tasks.services import tasks_generate
    from tests.factories import make_accounts

    make_accounts(3)
    paused = make_order(action="view", quantity=2)
    canceled = make_order(action="reaction", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    assert (
        _post_action(admin_client, "orders_order", "pause_orders", [paused.pk]).status_code == 200
    )
    paused.refresh_from_db()
    assert paused.paused_at is not None
    assert set(
        TelegramTask.objects.filter(order=paused).values_list("failure_reason", flat=True)
    ) == {"order_paused"}
    assert tasks_generate(limit=10, now=timezone.now()).created == 0
    _post_action(admin_client, "orders_order", "resume_orders", [paused.pk])
    assert tasks_generate(limit=10, now=timezone.now()).created == 2
    _post_action(admin_client, "orders_order", "cancel_orders", [canceled.pk])
    canceled.refresh_from_db()
    assert canceled.status == Order.Status.CANCELED
    assert set(TelegramTask.objects.filter(order=canceled).values_list("status", flat=True)) == {
        "failed"
    }


def test_task_actions_requeue_and_fail(admin_client):
    from django.utils import timezone

    from telegram_tasks.models import TelegramTask
    from telegram_tasks.services import tasks_generate, tasks_pull
    from tests.factories import make_accounts

    make_accounts(2)
    make_order(action="view", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    leased = tasks_pull(limit=1, now=timezone.now()).tasks[0]["task_id"]
    response = _post_action(admin_client, "telegram_tasks_telegramtask", "requeue_tasks", [leased])
    assert "1 task(s) requeued" in response.content.decode()
    assert TelegramTask.objects.get(pk=leased).status == "queued"
    ids = list(TelegramTask.objects.values_list("pk", flat=True))
    _post_action(admin_client, "telegram_tasks_telegramtask", "fail_tasks", ids)
    assert set(TelegramTask.objects.values_list("failure_reason", flat=True)) == {"admin_failed"}


def test_account_page_shows_its_tier_and_limits_now(admin_client):
    from django.utils import timezone

    from telegram_tasks import claims

    account = make_account(tier="premium")
    claims.hold(account.pk, now=timezone.now(), seconds=600)
    page = admin_client.get(
        reverse("admin:telegram_tasks_telegramaccount_change", args=[account.pk])
    ).content.decode()
    assert "tier <b>premium</b>" in page
    assert "0 / 1000" in page  # channels against the tier's limit
    assert "0 / 40" in page  # premium's subscribe cap
    assert "hold 9m" in page or "hold 10m" in page


def test_order_page_shows_subscriptions_and_what_passes_found(admin_client):
    from django.utils import timezone

    from telegram_tasks.services import tasks_generate

    order = make_order(action="subscribe", link="t.me/durovpage", quantity=3, duration_days=7)
    tasks_generate(limit=10, now=timezone.now())  # no account: starved
    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "0 subscribed · 0 unsubscribed · 0 due for unsubscribe" in page
    assert "short of accounts now; 3 slot(s) starved" in page
    listing = admin_client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "made 0 · starved 3" in listing
    memberships = admin_client.get(
        reverse("admin:telegram_tasks_membership_changelist") + f"?order__id__exact={order.pk}"
    )
    assert memberships.status_code == 200


# --- the params an action needs ---------------------------------------------------------------

ORDER_FORM = {"quantity": 3, "per_call": 1, "interval_seconds": 0, "priority": 0,
              "execution_mode": "pull", "execution_meta": "{}"}  # fmt: skip


def _add_order(admin_client, **fields):
    return admin_client.post(reverse("admin:orders_order_add"), {**ORDER_FORM, **fields})


def test_order_add_page_offers_the_emoji_picker_and_the_option(admin_client):
    body = admin_client.get(reverse("admin:orders_order_add")).content.decode()
    assert 'name="reactions"' in body and 'name="option"' in body
    assert 'class="tg-reaction-picker"' in body and "🔥" in body
    assert "telegram_tasks/params.js" in body
    assert "data-action-params" in body and "&quot;reaction&quot;: [&quot;reactions&quot;]" in body


@pytest.mark.parametrize(
    ("fields", "params"),
    [
        ({"action": "reaction", "link": "t.me/durov/4", "reactions": "👍 🔥"},
         {"reactions": ["👍", "🔥"]}),
        ({"action": "poll_vote", "link": "t.me/durov/4", "option": "2"}, {"option": 2}),
        ({"action": "bot_start", "link": "t.me/ShopBot?start=ref1"}, {"start_param": "ref1"}),
        # A field of another action's parameter (hidden by the page) is not kept.
        ({"action": "view", "link": "t.me/durov/4", "reactions": "👍", "option": "3"}, {}),
    ],
)  # fmt: skip
def test_order_add_keeps_the_params_of_the_chosen_action(admin_client, fields, params):
    from orders.models import Order

    make_accounts(3)
    response = _add_order(admin_client, **fields)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Order.objects.get().params == params


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"action": "reaction", "link": "t.me/durov/4"}, "reactions", "needs its emoji"),
        ({"action": "reaction", "link": "t.me/durov/4", "reactions": "👍 nope"}, "reactions",
         "is not an emoji"),
        ({"action": "poll_vote", "link": "t.me/durov/4"}, "option", "the poll&#x27;s option"),
        ({"action": "poll_vote", "link": "t.me/durov/4", "option": "0"}, "option",
         "greater than or equal to 1"),
        ({"action": "bot_start", "link": "t.me/durov"}, "link", "acts on a bot"),
    ],
)  # fmt: skip
def test_order_add_refuses_missing_or_invalid_params_as_field_errors(
    admin_client, fields, field, says
):
    from orders.models import Order

    response = _add_order(admin_client, **fields)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert says in response.content.decode()
    assert not Order.objects.exists()


def test_order_change_page_edits_a_reactions_mix(admin_client):

    order = make_order(action="reaction", link="t.me/durov/4", params={"reactions": ["👍"]})
    url = reverse("admin:orders_order_change", args=[order.pk])
    body = admin_client.get(url).content.decode()
    assert 'name="reactions"' in body and 'value="👍"' in body and 'name="option"' not in body
    form = {"interval_seconds": 0, "priority": 0, "execution_mode": "pull",
            "execution_meta": "{}", "reactions": "👍 ❤️"}  # fmt: skip
    assert admin_client.post(url, form).status_code == 302
    order.refresh_from_db()
    assert order.params == {"reactions": ["👍", "❤️"]}
    response = admin_client.post(url, {**form, "reactions": ""})
    assert response.status_code == 200 and "reactions" in response.context["adminform"].form.errors
    order.refresh_from_db()
    assert order.params == {"reactions": ["👍", "❤️"]}


def test_order_list_shows_each_orders_params(admin_client):
    make_order(action="reaction", link="t.me/durov/4", params={"reactions": ["👍", "🔥"]})
    make_order(action="poll_vote", link="t.me/durov/5", params={"option": 2})
    body = admin_client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "t.me/durov/4 · 👍 🔥" in body and "t.me/durov/5 · option 2" in body
