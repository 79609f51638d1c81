"""The panel API (/api/v2) driven as panel scripts drive it: a live server, a client that only
form-POSTs ``key`` and ``action`` and reads JSON (tests/panel_client.py)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.test import TestCase
from django.utils import timezone

from orders.customers import ApiKey, BalanceEntry, Customer
from orders.models import Order
from orders.services import api_key_revoke
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts
from tests.panel_client import Panel
from tests.panel_world import balance, deliver, ledger_sum, make_customer, make_service, order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def url(live_server):
    return f"{live_server.url}/api/v2"


@pytest.fixture
def alice(url):
    customer, key = make_customer("alice", "10")
    return customer, Panel(url, key)


def test_services_lists_the_enabled_catalogue_in_the_market_shape(alice):
    _, panel = alice
    views = make_service(name="Views", rate=Decimal("0.9"), min_quantity=10, max_quantity=10000)
    make_service(name="Hidden", enabled=False)
    subs = make_service(name="Members", action="subscribe", rate=Decimal("1.23456"),
                        refill_days=30, cancel=False, dripfeed=False)  # fmt: skip
    assert panel.call("services") == [
        {"service": views.pk, "name": "Views", "type": "Default", "category": "Telegram",
         "rate": "0.90", "min": "10", "max": "10000", "dripfeed": True, "refill": False,
         "cancel": True},
        {"service": subs.pk, "name": "Members", "type": "Default", "category": "Telegram",
         "rate": "1.23456", "min": "1", "max": "1000", "dripfeed": False, "refill": True,
         "cancel": False},
    ]  # fmt: skip


def test_a_wrong_missing_or_revoked_key_is_invalid_and_a_disabled_customer_is_told(alice, url):
    customer, panel = alice
    assert Panel(url, "").call("balance") == {"error": "Invalid API key"}
    # The key with its last character changed (a fixed "0" was the key itself once in 16).
    other = panel.key[:-1] + ("1" if panel.key.endswith("0") else "0")
    assert Panel(url, other).call("balance") == {"error": "Invalid API key"}
    assert Panel(url, "x" * 500).call("balance") == {"error": "Invalid API key"}
    Customer.objects.filter(pk=customer.pk).update(enabled=False)
    assert panel.call("balance") == {"error": "Your account is disabled"}
    Customer.objects.filter(pk=customer.pk).update(enabled=True)
    assert panel.call("balance") == {"balance": "10.00", "currency": "USD"}
    api_key_revoke(key_ids=[ApiKey.objects.get(customer=customer).pk], now=timezone.now())
    status, body, _ = panel.raw("balance")
    assert (status, body) == (200, {"error": "Invalid API key"})


def test_add_charges_exactly_in_the_orders_transaction_and_status_shows_it(alice):
    customer, panel = alice
    service = make_service(rate=Decimal("0.90123"))
    answer = panel.call("add", service=service.pk, link="https://t.me/durov/42", quantity=309)
    made = order(answer["order"])
    assert (made.action, made.link, made.post_id, made.quantity) == (
        "view", "https://t.me/durov", 42, 309,
    )  # fmt: skip
    # 0.90123 x 309 / 1000 = 0.27848007, exactly
    assert made.charge == Decimal("0.27848007")
    assert balance(customer) == Decimal("10") - Decimal("0.27848007") == ledger_sum(customer)
    [charge] = BalanceEntry.objects.filter(customer=customer, kind="charge")
    assert (charge.order_id, charge.amount, charge.actor) == (
        made.pk, Decimal("-0.27848007"), f"api:{panel.key[:8]}",
    )  # fmt: skip
    assert panel.call("status", order=made.pk) == {
        "charge": "0.27848007", "start_count": "0", "status": "Pending", "remains": "309",
        "currency": "USD",
    }  # fmt: skip
    assert panel.call("balance") == {"balance": "9.72151993", "currency": "USD"}


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"service": "999999", "quantity": "10"}, "Incorrect service ID"),
        ({"service": "abc", "quantity": "10"}, "Incorrect service ID"),
        ({"service": "disabled", "quantity": "10"}, "Incorrect service ID"),
        ({"quantity": "9"}, "Quantity less than minimal 10"),
        ({"quantity": "501"}, "Quantity more than maximal 500"),
        ({"quantity": "100", "runs": "6", "interval": "5"}, "Quantity more than maximal 500"),
        ({"quantity": "-5"}, "Incorrect quantity: give a whole number"),
        ({"quantity": "1.5"}, "Incorrect quantity: give a whole number"),
        ({"quantity": "401"}, "Not enough funds on balance"),  # 1.0025 > 1
        ({"quantity": "10", "link": "https://example.com/x"}, "Incorrect link: "),
        ({"quantity": "10", "link": "t.me/durov"}, "Incorrect link: a view acts on a post"),
        ({"quantity": "10", "link": ""}, "Incorrect link: give the Telegram link"),
        ({"quantity": "10", "runs": "2", "interval": "0"}, "Incorrect interval: at least 1"),
        ({"quantity": "10", "service": "nodrip", "runs": "2", "interval": "5"},
         "Drip-feed is not available for this service"),
    ],
)  # fmt: skip
def test_a_refused_add_says_why_and_changes_nothing(url, fields, error):
    customer, key = make_customer("bob", "1")  # buys 400 units at 2.50 per 1000
    service = make_service(rate=Decimal("2.5"), min_quantity=10, max_quantity=500)
    nodrip = make_service(rate=Decimal("2.5"), min_quantity=10, max_quantity=500, dripfeed=False)
    disabled = make_service(enabled=False)
    names = {"disabled": disabled.pk, "nodrip": nodrip.pk}
    wanted = {"service": service.pk, "link": "t.me/durov/1", **fields}
    wanted["service"] = names.get(wanted["service"], wanted["service"])
    answer = Panel(url, key).call("add", **wanted)
    assert set(answer) == {"error"} and answer["error"].startswith(error), answer
    assert Order.objects.count() == 0
    assert balance(customer) == Decimal("1") == ledger_sum(customer)


def test_dripfeed_runs_times_quantity_every_interval_becomes_the_orders_slots(alice):
    customer, panel = alice
    service = make_service(rate=Decimal("1"))
    answer = panel.call("add", service=service.pk, link="t.me/durov/5", quantity=10, runs=3,
                        interval=5)  # fmt: skip
    made = order(answer["order"])
    # 3 runs of 10 = 30 units, one per task, 5 min / 10 = 30 s apart: 10 per interval.
    assert (made.quantity, made.per_call, made.interval_seconds) == (30, 1, 30)
    assert made.charge == Decimal("0.03")
    assert balance(customer) == Decimal("9.97")


def test_status_of_many_orders_and_a_customer_never_sees_anothers(alice, url):
    _, panel = alice
    _, bob_key = make_customer("bob", "10")
    bob = Panel(url, bob_key)
    service = make_service()
    mine = panel.call("add", service=service.pk, link="t.me/a_chan/1", quantity=10)["order"]
    theirs = bob.call("add", service=service.pk, link="t.me/a_chan/1", quantity=10)["order"]
    many = panel.call("status", orders=f"{mine},{theirs},nonsense,{theirs + 1000}")
    assert many == {
        str(mine): {"charge": "0.009", "start_count": "0", "status": "Pending", "remains": "10",
                    "currency": "USD"},
        str(theirs): {"error": "Incorrect order ID"},
        "nonsense": {"error": "Incorrect order ID"},
        str(theirs + 1000): {"error": "Incorrect order ID"},
    }  # fmt: skip
    assert panel.call("status", order=theirs) == {"error": "Incorrect order ID"}
    assert panel.call("cancel", orders=str(theirs)) == [
        {"order": theirs, "cancel": {"error": "Incorrect order ID"}}
    ]
    assert panel.call("refill", order=theirs) == {"error": "Incorrect order ID"}
    assert order(theirs).status == Order.Status.AWAITING
    assert panel.call("status", orders=",".join(str(i) for i in range(101))) == {
        "error": "Too many ids: at most 100 in one request"
    }


def test_cancel_refunds_the_undelivered_part_exactly(alice):
    customer, panel = alice
    make_accounts(10)
    service = make_service(rate=Decimal("0.77777"))
    untouched = panel.call("add", service=service.pk, link="t.me/chan_x/1", quantity=5)["order"]
    partly = panel.call("add", service=service.pk, link="t.me/chan_y/2", quantity=7)["order"]
    deliver(partly, 3)
    answer = panel.call("cancel", orders=f"{untouched},{partly}")
    assert answer == [{"order": untouched, "cancel": 1}, {"order": partly, "cancel": 1}]
    # Nothing delivered: Canceled, all back. 3 of 7 delivered: Partial, 4/7 back.
    assert panel.call("status", orders=f"{untouched},{partly}") == {
        str(untouched): {"charge": "0.00", "start_count": "0", "status": "Canceled",
                         "remains": "5", "currency": "USD"},
        str(partly): {"charge": "0.00233331", "start_count": "0", "status": "Partial",
                      "remains": "4", "currency": "USD"},
    }  # fmt: skip
    assert balance(customer) == Decimal("10") - Decimal("0.00233331") == ledger_sum(customer)
    assert BalanceEntry.objects.filter(kind="refund").count() == 2
    # Again: nothing more happens.
    assert panel.call("cancel", order=partly) == [
        {"order": partly, "cancel": {"error": "Order is already partial"}}
    ]
    assert balance(customer) == Decimal("10") - Decimal("0.00233331")


def test_a_service_may_forbid_cancel_and_a_completed_order_cannot_be_canceled(alice):
    _, panel = alice
    make_accounts(5)
    fixed = make_service(cancel=False)
    service = make_service()
    a = panel.call("add", service=fixed.pk, link="t.me/chan_z/1", quantity=2)["order"]
    b = panel.call("add", service=service.pk, link="t.me/chan_z/2", quantity=2)["order"]
    deliver(b, 2)
    assert panel.call("cancel", orders=f"{a},{b}") == [
        {"order": a, "cancel": {"error": "Cancel is not available for this order"}},
        {"order": b, "cancel": {"error": "Order is already completed"}},
    ]
    assert panel.call("status", order=b)["status"] == "Completed"


def test_an_order_the_broker_stops_is_refunded_and_a_late_report_moves_nothing(alice):
    customer, panel = alice
    make_accounts(5)
    service = make_service(rate=Decimal("3"))
    pk = panel.call("add", service=service.pk, link="t.me/gone_chan/9", quantity=4)["order"]
    deliver(pk, 1)
    [first, *_] = tasks_pull(limit=10, now=timezone.now()).tasks or deliver_more(pk)
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(
            reports=[ReportIn(task_id=first["task_id"], state="failed", lease_id=first["lease_id"],
                              error_code="CHANNEL_PRIVATE")],
            now=timezone.now(),
        )  # fmt: skip
    assert panel.call("status", order=pk) == {
        "charge": "0.003", "start_count": "0", "status": "Partial", "remains": "3",
        "currency": "USD",
    }  # fmt: skip
    after_end = balance(customer)
    assert after_end == Decimal("10") - Decimal("0.003") == ledger_sum(customer)
    # A late done for a task the end failed is a duplicate: remains and money stay.
    late = TelegramTask.objects.filter(order_id=pk, status="failed").exclude(pk=first["task_id"])
    for task in late:
        tasks_report(reports=[ReportIn(task_id=task.pk, state="done")], now=timezone.now())
    assert order(pk).remains == 3 and balance(customer) == after_end


def deliver_more(pk: int) -> list:
    """The handed-out tasks of the order left by ``deliver`` (pulled already)."""
    return [
        {"task_id": t.pk, "lease_id": t.lease_id}
        for t in TelegramTask.objects.filter(order_id=pk, status="leased")
    ]


def test_concurrent_adds_never_overdraw_a_small_balance(url):
    customer, key = make_customer("carol", "1")
    service = make_service(rate=Decimal("10"))  # 10 units cost 0.10: ten orders fit
    answers: list = []
    barrier = threading.Barrier(16)

    def add(i: int) -> None:
        barrier.wait()
        for j in range(3):
            answers.append(Panel(url, key).call("add", service=service.pk,
                                                link=f"t.me/conc_chan/{i * 10 + j + 1}", quantity=10))  # fmt: skip

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [a for a in answers if "order" in a]
    refused = [a for a in answers if a == {"error": "Not enough funds on balance"}]
    assert (len(made), len(refused)) == (10, 38)
    assert balance(customer) == Decimal("0") == ledger_sum(customer)
    assert Order.objects.filter(customer=customer).count() == 10


def test_a_retried_add_answers_the_first_order_and_charges_once(alice):
    customer, panel = alice
    service = make_service(rate=Decimal("1"))
    fields = {"service": service.pk, "link": "t.me/idem_chan/3", "quantity": 100}
    first = panel.call("add", headers={"Idempotency-Key": "k-1"}, **fields)
    again = panel.call("add", headers={"Idempotency-Key": "k-1"}, **fields)
    by_field = panel.call("add", request_id="r-1", **fields)
    by_field_again = panel.call("add", request_id="r-1", **fields)
    assert first == again and by_field == by_field_again and first != by_field
    assert balance(customer) == Decimal("9.8") == ledger_sum(customer)
    other = panel.call("add", request_id="r-1", **{**fields, "quantity": 101})
    assert other == {"error": "This request_id (Idempotency-Key) was used for another order"}
    answers: list = []
    barrier = threading.Barrier(8)

    def retry() -> None:
        barrier.wait()
        answers.append(panel.call("add", headers={"Idempotency-Key": "k-conc"}, **fields))

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a["order"] for a in answers}) == 1
    assert balance(customer) == Decimal("9.7") == ledger_sum(customer)


def test_rate_limit_per_key_answers_429_with_retry_after(alice, url, settings):
    settings.PANEL_RATE_LIMIT = "3/minute"
    _, panel = alice
    _, other_key = make_customer("dave", "1")
    assert [panel.raw("balance")[0] for _ in range(3)] == [200, 200, 200]
    status, body, headers = panel.raw("balance")
    assert status == 429 and body == {"error": "Too many requests: slow down"}
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert Panel(url, other_key).raw("balance")[0] == 200  # another key counts on its own


def test_start_count_is_the_first_a_report_carried(alice):
    _, panel = alice
    make_accounts(4)
    service = make_service()
    pk = panel.call("add", service=service.pk, link="t.me/count_chan/4", quantity=3)["order"]
    deliver(pk, 0)
    tasks = deliver_more(pk)
    for task, count in zip(tasks, (None, 3572, 9999), strict=False):
        data = {"start_count": count} if count else {"views": 1}
        tasks_report(reports=[ReportIn(task_id=task["task_id"], state="done", data=data,
                                       lease_id=task["lease_id"])], now=timezone.now())  # fmt: skip
    assert panel.call("status", order=pk)["start_count"] == "3572"


def test_unknown_action_get_and_json_or_multipart_bodies(alice, url):
    import json
    import urllib.request

    _, panel = alice
    assert panel.call("nope")["error"].startswith("Incorrect request: action must be one of")
    with urllib.request.urlopen(url) as response:  # noqa: S310
        assert json.loads(response.read()) == {"error": "Incorrect request: use POST"}
    body = json.dumps({"key": panel.key, "action": "balance"}).encode()
    request = urllib.request.Request(url + "/", data=body,  # noqa: S310
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request) as response:  # noqa: S310
        assert json.loads(response.read()) == {"balance": "10.00", "currency": "USD"}
    boundary = "xYz"
    parts = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in {"key": panel.key, "action": "balance"}.items()
        )
        + f"--{boundary}--\r\n"
    )
    request = urllib.request.Request(  # noqa: S310
        url, data=parts.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    with urllib.request.urlopen(request) as response:  # noqa: S310
        assert json.loads(response.read())["balance"] == "10.00"


# --- what each action needs: a service fixes its params, a poll service takes answer_number ---


def test_a_reaction_service_fixes_its_mix_and_the_orders_tasks_take_it_in_turn(alice):
    _, panel = alice
    make_accounts(4)
    mix = ["👍", "❤️", "🔥"]
    service = make_service(name="Positive", action="reaction", params={"reactions": mix})
    pk = panel.call("add", service=service.pk, link="t.me/durov/12", quantity=4)["order"]
    assert order(pk).params == {"reactions": mix}
    tasks_generate(limit=100, now=timezone.now())
    pulled = sorted(tasks_pull(limit=10, now=timezone.now()).tasks, key=lambda t: t["task_id"])
    assert [t["params"] for t in pulled] == [{"reaction": e} for e in [*mix, mix[0]]]


def test_a_poll_service_takes_answer_number_on_add(alice):
    customer, panel = alice
    make_accounts(1)
    poll = make_service(name="Poll votes", action="poll_vote", rate=Decimal("2"))
    fixed = make_service(name="Vote 3", action="poll_vote", params={"option": 3})
    types = {s["service"]: s["type"] for s in panel.call("services")}
    assert (types[poll.pk], types[fixed.pk]) == ("Poll", "Default")
    for answer in (None, "", "zero", "0", "101"):
        fields = {} if answer is None else {"answer_number": answer}
        got = panel.call("add", service=poll.pk, link="t.me/durov/12", quantity=1, **fields)
        assert got["error"].startswith("Incorrect parameters: "), got
    assert not Order.objects.exists() and balance(customer) == Decimal("10")
    pk = panel.call("add", service=poll.pk, link="t.me/durov/12", quantity=1,
                    answer_number="2")["order"]  # fmt: skip
    other = panel.call("add", service=fixed.pk, link="t.me/durov/13", quantity=1)["order"]
    assert (order(pk).params, order(other).params) == ({"option": 2}, {"option": 3})
    tasks_generate(limit=100, now=timezone.now())
    [task] = tasks_pull(limit=10, now=timezone.now()).tasks  # one account: one vote at a time
    assert task["params"] == {"option": 2}


def test_a_bot_start_add_keeps_its_start_parameter(alice):
    _, panel = alice
    bots = make_service(name="Bot starts", action="bot_start")
    pk = panel.call("add", service=bots.pk, link="https://t.me/ShopBot?start=ref_77",
                    quantity=2)["order"]  # fmt: skip
    assert (order(pk).link, order(pk).params) == (
        "https://t.me/shopbot?start=ref_77",
        {"start_param": "ref_77"},
    )
    got = panel.call("add", service=bots.pk, link="t.me/durov", quantity=2)
    assert got["error"].startswith("Incorrect link: a bot_start acts on a bot")


def test_a_service_without_what_its_action_needs_is_refused():
    from django.core.exceptions import ValidationError

    from orders.models import Service

    for action, params in (("reaction", {}), ("reaction", {"reactions": ["no"]}),
                           ("poll_vote", {"option": 0}), ("view", {"option": 1})):  # fmt: skip
        service = Service(name="x", action=action, rate=Decimal("1"), params=params)
        with pytest.raises(ValidationError) as caught:
            service.full_clean()
        assert "params" in caught.value.message_dict


def test_the_only_emoji_refused_ends_and_refunds_the_order_a_mix_goes_on(alice):
    customer, panel = alice
    make_accounts(4)
    single = make_service(name="Clowns", action="reaction", rate=Decimal("3"),
                          params={"reactions": ["🤡"]})  # fmt: skip
    mixed = make_service(name="Mix", action="reaction", rate=Decimal("3"),
                         params={"reactions": ["🤡", "👍"]})  # fmt: skip
    a = panel.call("add", service=single.pk, link="t.me/noclowns/1", quantity=2)["order"]
    b = panel.call("add", service=mixed.pk, link="t.me/noclowns/2", quantity=2)["order"]
    tasks_generate(limit=100, now=timezone.now())
    clowns = [t for t in tasks_pull(limit=10, now=timezone.now()).tasks
              if t["params"] == {"reaction": "🤡"}]  # fmt: skip
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(
            reports=[ReportIn(task_id=t["task_id"], state="failed", lease_id=t["lease_id"],
                              error_code="REACTION_INVALID") for t in clowns],
            now=timezone.now(),
        )  # fmt: skip
    assert panel.call("status", order=a)["status"] == "Canceled"
    assert panel.call("status", order=b)["status"] == "In progress"
    assert order(b).params == {"reactions": ["👍"]}
    # Order a refunded in full; b keeps its charge, its mix goes on with 👍.
    assert balance(customer) == Decimal("10") - Decimal("0.006") == ledger_sum(customer)
