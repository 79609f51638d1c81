"""The invariants of the contract (docs/contract.md), checked on what a run left in PostgreSQL,
Redis and the providers' logs. Each check returns the violations it found (none: a pass)."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from orders.models import Order

# The fleets' own checks (defined in ``sim.fleets``), run by check_all with the others.
from sim.fleets import check_disabled, check_isolation, fleet_of
from telegram_tasks.claims.scripts import connection
from telegram_tasks.conf import app_settings
from telegram_tasks.models import TelegramTask

EPSILON = timedelta(milliseconds=1)


def done_tasks() -> list[TelegramTask]:
    return list(
        TelegramTask.objects.filter(status="done")
        .order_by("finished_at")
        .only("id", "order_id", "action", "link_hash", "telegram_account_id", "per_call",
              "payload", "finished_at", "created_at", "membership_id")
    )  # fmt: skip


def tier_of(task: TelegramTask) -> str:
    """The tier the task's account had when it was reserved (its payload's snapshot)."""
    return (task.payload.get("account") or {}).get("tier") or "default"


def check_caps(done: list[TelegramTask]) -> list[str]:
    zone = ZoneInfo(settings.TIME_ZONE)
    count: dict[tuple[int, str, Any, str], int] = defaultdict(int)
    for t in done:
        day = t.finished_at.astimezone(zone).date()
        count[(t.telegram_account_id, t.action, day, tier_of(t))] += 1
    out = []
    for (account, action, day, tier), n in count.items():
        cap = app_settings.policy(action, tier).daily_cap
        if cap is not None and n > cap:
            out.append(f"cap: account {account} {action} on {day}: {n} successes > cap {cap}")
    return out


def check_account_limits(done: list[TelegramTask]) -> list[str]:
    """Invariant 10: an account's successes, all actions together, never closer than its tier's
    account_cooldown and never more than its account_daily_cap per local day."""
    zone = ZoneInfo(settings.TIME_ZONE)
    out = []
    last: dict[int, datetime] = {}
    per_day: dict[tuple[int, Any], int] = defaultdict(int)
    for t in done:
        limits = app_settings.tier(tier_of(t))
        account = t.telegram_account_id
        gap = timedelta(seconds=limits.account_cooldown)
        if (
            account in last
            and limits.account_cooldown
            and t.finished_at - last[account] < gap - EPSILON
        ):
            seconds = (t.finished_at - last[account]).total_seconds()
            out.append(f"account cooldown: account {account}: successes {seconds:.3f}s apart")
        last[account] = t.finished_at
        key = (account, t.finished_at.astimezone(zone).date())
        per_day[key] += 1
        if limits.account_daily_cap is not None and per_day[key] == limits.account_daily_cap + 1:
            out.append(f"account cap: account {account} on {key[1]}: > {limits.account_daily_cap}")
    return out


def check_channels() -> list[str]:
    """Invariant 9: at no moment is an account in more channels than its tier allows (its
    memberships' open intervals)."""
    from telegram_tasks.models import Membership, TelegramAccount

    tiers = dict(TelegramAccount.objects.values_list("id", "tier"))
    events: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for account, opened, closed in Membership.objects.values_list(
        "account_id", "subscribed_at", "unsubscribed_at"
    ):
        events[account].append((opened, 1))
        if closed is not None:
            events[account].append((closed, -1))
    out = []
    for account, items in events.items():
        most = app_settings.tier(tiers.get(account, "default")).max_channels
        live = 0
        for _, step in sorted(items, key=lambda e: (e[0], e[1])):  # leaving first at a tie
            live += step
            if most is not None and live > most:
                out.append(f"channels: account {account} in {live} channels > {most}")
                break
    return out


def check_auto_unsubscribes(done: list[TelegramTask]) -> list[str]:
    """Each membership whose time was up ends with exactly one successful unsubscribe, by the
    same account, of the same channel; none is left open (but a dead account's, and a disabled
    provider's, whose unsubscribes wait for it to come back)."""
    from telegram_tasks.models import Membership

    memberships = {
        m.pk: m for m in Membership.objects.exclude(due_at=None).select_related("account__provider")
    }
    out = []
    counted: dict[int, int] = defaultdict(int)
    for t in done:
        if t.membership_id is None:
            continue
        counted[t.membership_id] += 1
        m = memberships.get(t.membership_id)
        if m is None or (m.account_id, m.link_hash) != (t.telegram_account_id, t.link_hash):
            out.append(f"auto-unsubscribe: task {t.pk} is not its membership's account/channel")
    for pk, m in memberships.items():
        if m.state == "open" and m.account.is_active and m.account.provider.enabled:
            out.append(f"auto-unsubscribe: membership {pk} still open")
        if counted[pk] > 1:
            out.append(f"auto-unsubscribe: membership {pk} unsubscribed {counted[pk]} times")
    return out


def check_cooldowns(done: list[TelegramTask]) -> list[str]:
    last: dict[tuple[int, str], datetime] = {}
    out = []
    for t in done:
        key = (t.telegram_account_id, t.action)
        cooldown = timedelta(seconds=app_settings.policy(t.action, tier_of(t)).cooldown)
        if key in last and t.finished_at - last[key] < cooldown - EPSILON:
            gap = (t.finished_at - last[key]).total_seconds()
            out.append(f"cooldown: account {key[0]} {key[1]}: successes {gap:.3f}s apart")
        last[key] = t.finished_at
    return out


def check_subscriptions(done: list[TelegramTask], events: list[dict] | None = None) -> list[str]:
    """Per (account, link): done subscribes and unsubscribes alternate, starting with a
    subscribe; and no subscribe is handed to an account while another subscribe of the same
    link is in flight for it (from its first hand-out to its end in the ledger)."""
    gated = {a for a in app_settings.ACTIONS if app_settings.policy(a).gate}
    state: dict[tuple[int, str], str] = {}
    out = []
    for t in done:
        if t.action not in gated:
            continue
        key = (t.telegram_account_id, t.link_hash)
        gate = app_settings.policy(t.action).gate
        now_subscribed = state.get(key) == "subscribe"
        if gate == "subscribe" and now_subscribed:
            out.append(f"subscribe: account {key[0]} subscribed twice to {key[1][:12]}")
        if gate == "unsubscribe" and not now_subscribed:
            out.append(
                f"unsubscribe: account {key[0]} unsubscribed from {key[1][:12]} unsubscribed"
            )
        state[key] = gate
    lease_seconds = timedelta(seconds=app_settings.LEASE_SECONDS)
    first_handout: dict[str, datetime] = {}
    for e in events or []:
        if e["ev"] == "lease":
            start = datetime.fromisoformat(e["until"]) - lease_seconds
            first_handout[e["task"]] = min(first_handout.get(e["task"], start), start)
    spans: dict[tuple[int, str], list[tuple[datetime, datetime, str]]] = defaultdict(list)
    subscribes = TelegramTask.objects.filter(action="subscribe", pk__in=list(first_handout))
    for t in subscribes.exclude(finished_at=None):
        spans[(t.telegram_account_id, t.link_hash)].append(
            (first_handout[t.pk], t.finished_at, t.pk)
        )
    for key, items in spans.items():
        items.sort()
        for (_, end, a), (start, _, b) in pairwise(items):
            if start < end - timedelta(milliseconds=50):
                out.append(f"in flight: account {key[0]} was handed subscribe {b} while {a} lived")
    return out


def check_one_shot(done: list[TelegramTask]) -> list[str]:
    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    for t in done:
        if app_settings.policy(t.action).one_shot:
            seen[(t.telegram_account_id, t.action, t.link_hash, t.payload.get("post_id"))] += 1
    return [
        f"one-shot: {k[1]} by account {k[0]} succeeded {n} times" for k, n in seen.items() if n > 1
    ]


def check_remains(done: list[TelegramTask]) -> list[str]:
    delivered: dict[int, int] = defaultdict(int)
    for t in done:
        if t.membership_id is None:  # an automatic unsubscribe delivers none of the order's units
            delivered[t.order_id] += t.per_call
    out = []
    for order in Order.objects.all():
        expected = max(0, order.quantity - delivered[order.pk])
        if order.remains != expected:
            out.append(
                f"remains: order {order.pk} has {order.remains}, quantity {order.quantity} "
                f"minus {delivered[order.pk]} delivered = {expected}"
            )
        if order.status == Order.Status.COMPLETED and order.remains != 0:
            out.append(f"remains: order {order.pk} COMPLETED with remains {order.remains}")
    return out


def read_logs(folder: Path) -> list[dict]:
    """The providers' events, each with the provider (``fleet``) whose process saw it. A push
    the provider answered (200 or 202) is a hand-out like a leased pull; one it refused with
    5xx or 429 was never performed (the task was requeued)."""
    events = []
    for path in sorted(folder.glob("provider-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append({**json.loads(line), "fleet": fleet_of(path)})
    for path in sorted(folder.glob("push-*.jsonl")):
        for line in path.read_text().splitlines():
            e = json.loads(line) if line.strip() else {}
            if e.get("ev") == "push" and e["status"] in (200, 202):
                events.append({"ev": "lease", "task": e["task"], "lease": e["lease"],
                               "until": e["until"], "t": e["t"], "attempt": e["attempt"],
                               "account": e["account"], "fleet": fleet_of(path)})  # fmt: skip
    return events


def check_leases(events: list[dict]) -> list[str]:
    """No task is held by two pullers at once: each hand-out begins (on the server's clock,
    leased_until - LEASE_SECONDS) no earlier than the previous one ended — its lease (as
    extended) ran out, or a report or release handed it back to the queue."""
    lease_seconds = timedelta(seconds=app_settings.LEASE_SECONDS)
    handouts: dict[str, dict[str, dict]] = defaultdict(dict)
    for e in events:
        if e["ev"] == "lease":
            until = datetime.fromisoformat(e["until"])
            handouts[e["task"]][e["lease"]] = {"start": until - lease_seconds, "end": until}
    for e in events:
        h = handouts.get(e.get("task"), {}).get(e.get("lease"))
        if h is None:
            continue
        if e["ev"] == "extend":
            h["end"] = max(h["end"], datetime.fromisoformat(e["until"]))
        ended_early = (e["ev"] == "release" and e["ok"]) or (
            e["ev"] == "report" and e.get("status") == "queued" and not e.get("dup")
        )
        if ended_early:
            h["end"] = min(h["end"], datetime.fromtimestamp(e["t"], tz=h["end"].tzinfo))
    out = []
    for task, by_lease in handouts.items():
        spans = sorted(by_lease.values(), key=lambda h: h["start"])
        for a, b in itertools.pairwise(spans):
            if b["start"] < a["end"] - timedelta(milliseconds=50):
                out.append(
                    f"lease: task {task} handed out at {b['start']} while held until {a['end']}"
                )
    replays = [e for e in events if e["ev"] == "replay" and not e["subset"]]
    out += [f"replay: a repeated request_id leased other tasks ({e})" for e in replays]
    return out


def check_no_lost_tasks() -> list[str]:
    alive = TelegramTask.objects.filter(status__in=["queued", "leased", "pending"])
    return [f"lost: task {t.pk} still {t.status}" for t in alive[:20]]


def check_no_orphan_locks() -> list[str]:
    redis = connection()
    pattern = f"{app_settings.KEY_PREFIX}:*:lock:*"
    tokens = {k: redis.hget(k, "token") for k in redis.scan_iter(match=pattern, count=1000)}
    live = set(
        TelegramTask.objects.filter(
            pk__in=[t.decode() for t in tokens.values() if t],
            status__in=["queued", "leased", "pending"],
        ).values_list("pk", flat=True)
    )
    return [
        f"orphan lock: {key.decode()} held by {token.decode() if token else None}"
        for key, token in tokens.items()
        if not token or token.decode() not in live
    ]


def check_params(events: list[dict]) -> list[str]:
    """Every task carries what its action needs, as its order says: a reaction one emoji of its
    order's mix, the mix's emoji in turn (its tasks in id order) while no emoji was refused, and
    no emoji in a task made after the channel refused it; a poll vote its order's option; a bot
    start its link's start parameter; any other action {}. And no provider found a task it could
    not perform (``bad_params``)."""
    from telegram_tasks.models import OrderTurn
    from telegram_tasks.ulid import ulid_time

    out = [f"params: task {e['task']}: {e['problem']}" for e in events if e["ev"] == "bad_params"]
    orders = {o.pk: o for o in Order.objects.all()}
    turns = dict(OrderTurn.objects.values_list("order_id", "made"))
    tasks: dict[int, list[TelegramTask]] = defaultdict(list)
    for t in TelegramTask.objects.filter(membership=None).order_by("id"):
        tasks[t.order_id].append(t)
    for pk, made in tasks.items():
        order = orders[pk]
        params = [t.payload.get("params", {}) for t in made]
        expected: dict = {}
        if order.action == "poll_vote":
            expected = {"option": order.params["option"]}
        elif order.action == "bot_start" and order.params.get("start_param"):
            expected = {"start_param": order.params["start_param"]}
        if order.action != "reaction":
            wrong = [p for p in params if p != expected]
            out += [f"params: order {pk} task has {p}, not {expected}" for p in wrong]
            continue
        refused = {}
        for t in made:
            if t.failure_reason == "reaction_invalid" and t.finished_at is not None:
                emoji = t.payload["params"]["reaction"]
                refused[emoji] = min(refused.get(emoji, t.finished_at), t.finished_at)
        for t, p in zip(made, params, strict=True):
            at = refused.get(p.get("reaction"))
            if at is not None and ulid_time(t.pk) > at + timedelta(seconds=2):
                out.append(f"params: order {pk} made task {t.pk} with {p} after its refusal")
        mix = order.params["reactions"]
        if refused or len(mix) < 2:
            continue
        if [p.get("reaction") for p in params] != [mix[k % len(mix)] for k in range(len(made))]:
            out.append(f"params: order {pk}'s tasks do not take {mix} in turn")
        if turns.get(pk) != len(made):
            out.append(f"params: order {pk} made {len(made)} tasks, its turn says {turns.get(pk)}")
    return out


def check_money() -> list[str]:
    """The panel's money: every balance is the sum of its ledger rows; each panel order was
    charged ``rate x quantity / 1000`` once (a refill nothing), and each ended one was settled,
    refunded its undelivered part exactly once; a balance is what was put in, less the
    charges, plus the refunds."""
    from decimal import Decimal

    from orders import money
    from orders.customers import BalanceEntry, Customer
    from orders.services import balances_verify

    out = balances_verify()
    rows: dict[tuple[int | None, str], list[Decimal]] = defaultdict(list)
    for entry in BalanceEntry.objects.all():
        rows[(entry.order_id, entry.kind)].append(entry.amount)
    for order in Order.objects.exclude(customer=None).select_related("service"):
        charge = (
            Decimal(0)
            if order.refill_of_id
            else money.charge_for(order.service.rate, order.quantity)
        )
        if order.charge != charge or rows[(order.pk, "charge")] != ([-charge] if charge else []):
            out.append(f"money: order {order.pk} charged {order.charge}, ledger "
                       f"{rows[(order.pk, 'charge')]}, expected {charge}")  # fmt: skip
        if order.status in Order.ACTIVE:
            continue
        refund = money.refund_for(order.charge, quantity=order.quantity, remains=order.remains)
        ledger = rows[(order.pk, "refund")]
        if (
            order.settled_at is None
            or order.refund != refund
            or ledger != ([refund] if refund else [])
        ):
            out.append(f"money: order {order.pk} ({order.status}, remains {order.remains}) "
                       f"refunded {order.refund}, ledger {ledger}, expected {refund}")  # fmt: skip
    for customer in Customer.objects.all():
        put_in = sum(
            (e.amount for e in BalanceEntry.objects.filter(customer=customer, kind="adjustment")),
            Decimal(0),
        )
        net = sum(
            (o.charge - o.refund for o in Order.objects.filter(customer=customer)), Decimal(0)
        )
        if customer.balance != put_in - net:
            out.append(f"money: {customer} balance {customer.balance} != {put_in} - {net}")
    return out


def check_all(log_folder: Path) -> dict[str, list[str]]:
    done = done_tasks()
    events = read_logs(log_folder)
    marks = log_folder / "disabled.json"
    disabled = json.loads(marks.read_text()) if marks.exists() else {}
    return {
        "providers: each handed its own tasks only, orders routed": check_isolation(events),
        "a disabled provider is handed nothing more": check_disabled(events, disabled),
        "1 daily caps": check_caps(done),
        "2 cooldowns": check_cooldowns(done),
        "3 no double subscribe": check_subscriptions(done, events),
        "4 one-shot": check_one_shot(done),
        "5 exact remains": check_remains(done),
        "6 one holder per task": check_leases(events),
        "7 no lost task": check_no_lost_tasks(),
        "7 no orphan lock": check_no_orphan_locks(),
        "9 channels within the tier's limit": check_channels(),
        "10 account-wide cooldown and cap": check_account_limits(done),
        "memberships end on time, once": check_auto_unsubscribes(done),
        "each task carries what its action needs": check_params(events),
        "money: balances = ledger, charged once, refunded exactly": check_money(),
    }
