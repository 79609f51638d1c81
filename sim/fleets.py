"""The simulation's checks of its provider fleets: each provider handed only its own tasks, a
task its account's provider's, routed orders kept to their providers, a disabled provider
handed nothing more (``check_all`` in ``sim.check`` runs them with the contract's)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from django.db.models import F

from orders.models import Order
from telegram_tasks.models import TelegramTask


def fleet_of(path: Path) -> str | None:
    """The provider whose process wrote a log: provider-<fleet>-<n>.jsonl, push-<fleet>.jsonl
    (None for a log that names none)."""
    parts = path.stem.split("-")
    if parts[0] == "provider" and len(parts) >= 3:
        return "-".join(parts[1:-1])
    if parts[0] == "push" and len(parts) >= 2 and not parts[-1].isdigit():
        return "-".join(parts[1:])
    return None


def check_isolation(events: list[dict]) -> list[str]:
    """Each provider is handed (pulled or pushed) only tasks of its own accounts; every task is
    its account's provider's; an order limited to some providers got tasks of theirs only."""
    from telegram_tasks.models import Provider

    names = dict(Provider.objects.values_list("pk", "name"))
    owner = dict(TelegramTask.objects.values_list("id", "provider_id"))
    out = [
        f"isolation: {e['fleet']} was handed task {e['task']} of {names.get(owner.get(e['task']))}"
        for e in events
        if e["ev"] == "lease" and e.get("fleet") and names.get(owner.get(e["task"])) != e["fleet"]
    ]
    out += [
        f"isolation: task {pk} is provider {p}'s, its account provider {a}'s"
        for pk, p, a in TelegramTask.objects.exclude(telegram_account=None)
        .exclude(provider_id=F("telegram_account__provider_id"))
        .values_list("id", "provider_id", "telegram_account__provider_id")[:20]
    ]
    routed: dict[int, set[int]] = defaultdict(set)
    for order_id, provider_id in Order.providers.through.objects.values_list(
        "order_id", "provider_id"
    ):
        routed[order_id].add(provider_id)
    out += [
        f"routing: order {o}'s task {pk} went to provider {names.get(p)}"
        for pk, o, p in TelegramTask.objects.filter(order_id__in=list(routed)).values_list(
            "id", "order_id", "provider_id"
        )
        if p not in routed[o]
    ]
    return out


def check_disabled(events: list[dict], disabled: dict[str, float]) -> list[str]:
    """A provider disabled at ``disabled[name]`` (Unix time) is handed nothing after it (a
    second's margin: a pull answered as the disable committed is logged a moment later) and
    gets no task made after it (two seconds: a generation pass that began before)."""
    from telegram_tasks.models import Provider

    out = [
        f"disabled: {e['fleet']} was handed task {e['task']} {e['t'] - disabled[e['fleet']]:.1f}"
        " s after it was disabled"
        for e in events
        if e["ev"] == "lease" and e.get("fleet") in disabled and e["t"] > disabled[e["fleet"]] + 1
    ]
    for name, at in disabled.items():
        late = TelegramTask.objects.filter(
            provider__name=name, created_at__gt=datetime.fromtimestamp(at + 2, tz=ZoneInfo("UTC"))
        )
        out += [f"disabled: task {t} made for {name} after it was disabled" for t in late[:10]]
        if Provider.objects.filter(name=name, enabled=True).exists():
            out.append(f"disabled: {name} is enabled")
    return out
