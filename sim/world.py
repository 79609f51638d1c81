"""The simulation's world: the provider fleets and their tokens, the accounts and the orders
(of every action and mode, some of them routed to fleets), and the SMM panel's customer and
services with the orders placed through its API."""

from __future__ import annotations

import os
import random

# The emoji the simulation's reaction orders take, one or a mix.
MIX = ["👍", "❤️", "🔥", "🎉", "😁"]


FLEETS = (("default", True), ("east", True), ("west", False))
DISABLED = "west"


def make_fleets(push_urls: dict[str, str]) -> dict[str, str]:
    """The providers (the default one exists: migration 0019 made it; its pushes go to
    PROVIDER_PUSH_URL, as before providers were rows); each one's token."""
    from django.utils import timezone

    from telegram_tasks.services.providers import providers_create

    tokens = {"default": os.environ["PROVIDER_TOKEN"]}
    for name, _ in FLEETS[1:]:
        _, tokens[name] = providers_create(
            name=name, push_url=push_urls.get(name, ""), now=timezone.now()
        )
    return tokens


def make_world(orders: int, accounts: int, rng: random.Random) -> None:
    from orders.models import Order
    from telegram_tasks.links import normalize_link
    from telegram_tasks.models import Provider, TelegramAccount
    from telegram_tasks.params import clean_params

    fleets = [Provider.objects.get(name=name) for name, _ in FLEETS]
    TelegramAccount.objects.bulk_create(
        TelegramAccount(
            provider=fleets[i % len(fleets)],
            provider_account_id=("dead" if i < 2 else "acc") + f"_{i}",
            phone=f"+1{i:09d}",
            tier="premium" if i % 4 == 0 else "default",
        )
        for i in range(accounts)
    )
    rows = []
    # Each unsubscribe order takes its own subscribe order's link, asking for no more than it
    # subscribes: then there are always enough subscribed accounts for it to finish.
    # Half the other subscribe orders buy a day (which the time machine makes a second): their
    # memberships end by themselves, so no unsubscribe order takes their link.
    subscribe_orders: list[tuple[str, int, int]] = []
    paired: list[int] = []  # the subscribe orders an unsubscribe order may follow, and those
    kinds = ["view", "reaction", "poll_vote", "bot_start", "subscribe", "unsubscribe"]
    for i in range(orders):
        kind = rng.choices(kinds, [35, 25, 8, 7, 17, 8])[0]
        quantity = rng.randint(2, 5)
        duration = None
        params: dict = {}
        mode = "push" if rng.random() < 0.25 else "pull"
        if i < 2:
            kind, raw = "view", f"t.me/privatechan{i}/1"  # the provider answers CHANNEL_PRIVATE
        elif 2 <= i < 4:
            # The provider refuses 🤡 in "noclown" channels (REACTION_INVALID): a mix goes on
            # without it, an order of 🤡 alone ends. A "gonepost" is MESSAGE_ID_INVALID.
            kind, raw, mode = "reaction", f"t.me/noclown{i}/1", "pull"
            params = {"reactions": ["🤡", "👍", "🔥"] if i == 2 else ["🤡"]}
        elif i == 4:
            kind, raw, mode = "poll_vote", "t.me/gonepost4/1", "pull"
            params = {"option": 1}
        elif kind == "reaction":
            raw = f"t.me/post{i:05d}/{rng.randint(1, 50)}"
            params = {"reactions": rng.sample(MIX, rng.choice([1, 1, 2, 3, 4]))}
        elif kind == "poll_vote":
            raw = f"t.me/post{i:05d}/{rng.randint(1, 50)}"
            params = {"option": rng.randint(1, 4)}
        elif kind == "bot_start":
            # A few bots, several start links each: one start per account and bot, whatever
            # the parameter.
            raw = f"t.me/simshop{i % 3}bot" + (f"?start=ref{i}" if rng.random() < 0.8 else "")
        elif kind == "subscribe":
            raw = f"t.me/channel{i:05d}"
            if rng.random() < 0.5:
                duration = 1
            else:
                subscribe_orders.append((raw, quantity, i))
                paired.append(i)
        elif kind == "unsubscribe" and subscribe_orders:
            raw, most, _ = subscribe_orders.pop(0)
            quantity = rng.randint(1, most)
            paired.append(i)
        else:
            kind = "view" if kind == "unsubscribe" else kind
            raw = f"t.me/post{i:05d}/{rng.randint(1, 50)}"
        target = normalize_link(raw)
        link = target.link
        if kind == "bot_start" and target.start_param:
            link, params = target.start_link, {"start_param": target.start_param}
        rows.append(
            Order(action=kind, link=link, post_id=target.post_id, link_hash=target.link_hash,
                  quantity=quantity, remains=quantity, per_call=1,
                  interval_seconds=rng.choice([0, 0, 0, 1, 2]), priority=rng.choice([0, 0, 1, 2]),
                  duration_days=duration, params=clean_params(kind, params), execution_mode=mode)
        )  # fmt: skip
    made = Order.objects.bulk_create(rows)
    # Routing: every tenth order is limited to the "east" fleet; a subscribe order an unsubscribe
    # order follows, and that one, to the fleets that are never disabled (the unsubscribes can
    # only use the accounts the subscribes made members, which must stay usable).
    routes = {i: [fleets[1]] for i in range(5, len(made), 10)}
    routes.update({i: [f for f in fleets if f.name != DISABLED] for i in paired})
    Order.providers.through.objects.bulk_create(
        Order.providers.through(order_id=made[i].pk, provider_id=f.pk)
        for i, chosen in routes.items()
        for f in chosen
    )


def make_panel() -> tuple[str, list[int]]:
    """A customer of the panel API (its key) and the services it buys (views, members)."""
    from decimal import Decimal

    from django.utils import timezone

    from orders.models import Service
    from orders.services import customer_create

    _, key = customer_create(name="sim-panel", balance=Decimal("1000"), actor="sim",
                             now=timezone.now())  # fmt: skip
    views = Service.objects.create(name="Views", action="view", rate=Decimal("1.5"),
                                   min_quantity=1, max_quantity=100, cancel=True)  # fmt: skip
    members = Service.objects.create(name="Members", action="subscribe", rate=Decimal("2.75"),
                                     min_quantity=1, max_quantity=100, cancel=True,
                                     refill_days=30)  # fmt: skip
    return key.key, [views.pk, members.pk]


def panel_orders(base_url: str, key: str, services: list[int], count: int,
                 rng: random.Random) -> int:  # fmt: skip
    """Orders arriving through /api/v2 as a panel sends them (a retried add among them, some
    canceled at once, one on a channel that turns out private); returns how many were made."""
    import json
    import urllib.parse
    import urllib.request

    def call(**fields) -> dict:
        body = urllib.parse.urlencode({"key": key, **fields}).encode()
        with urllib.request.urlopen(f"{base_url}/api/v2", data=body, timeout=30) as r:  # noqa: S310
            return json.loads(r.read())

    made = []
    for i in range(count):
        views = i % 3 != 0 or i == 0
        if i == 0:
            link = "t.me/privatepanel/1"  # the provider answers CHANNEL_PRIVATE: refunded
        elif views:
            link = f"t.me/panelpost{i:04d}/{rng.randint(1, 50)}"
        else:
            link = f"t.me/panelchan{i:04d}"
        fields = {"action": "add", "service": services[0 if views else 1], "link": link,
                  "quantity": rng.randint(2, 5), "request_id": f"sim-{i}"}  # fmt: skip
        answer = call(**fields)
        assert call(**fields) == answer, "a retried add must answer the first order"
        made.append(answer["order"])
    canceled = call(action="cancel", orders=",".join(str(o) for o in made[1:count:7]))
    assert all(c["cancel"] == 1 or "error" in c["cancel"] for c in canceled), canceled
    return len(made)
