"""How the admin renders values: JSON, time left, limits, what generation passes found."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from telegram_tasks import selectors
from telegram_tasks.models import LIVE_STATUSES, OrderPassStats, TelegramAccount, TelegramTask


def pretty_json(value: Any) -> str:
    """Read-only JSON, indented, for admin change pages."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


def seconds_left(value: float) -> str:
    if value <= 0:
        return "—"
    minutes, seconds = divmod(int(value + 0.999), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def of_limit(count: int, limit: int | None) -> str:
    return f"{count} / {limit}" if limit is not None else f"{count} (no cap)"


def limits_table(limits: selectors.AccountLimits) -> SafeString:
    """An account's limits as RESERVE sees them now (one row per action)."""
    head = format_html(
        "<p>tier <b>{}</b> · hold {} · account cooldown {} ({} s) · today {} · channels {}{}</p>",
        limits.tier,
        seconds_left(limits.hold_left),
        seconds_left(limits.account_cooldown_left),
        limits.account_cooldown,
        of_limit(limits.today, limits.account_daily_cap),
        of_limit(limits.channels, limits.max_channels),
        " · CHANNELS_TOO_MUCH" if limits.channels_too_much else "",
    )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                a.action,
                of_limit(a.today, a.daily_cap),
                f"{seconds_left(a.cooldown_left)} (policy {a.cooldown} s)",
                task_link(a.lock_token) if a.lock_token else "—",
            )
            for a in limits.actions
        ),
    )
    return format_html(
        "{}<table><thead><tr><th>action</th><th>today</th><th>cooldown left</th>"
        "<th>held by task</th></tr></thead><tbody>{}</tbody></table>",
        head,
        rows,
    )


def task_link(task_id: str) -> SafeString:
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:telegram_tasks_telegramtask_change", args=[task_id]),
        task_id,
    )


def pass_stats_html(stats: OrderPassStats | None) -> SafeString:
    """What the last generation passes found for an order: why it is slow, if it is."""
    if stats is None:
        return format_html("{}", "no pass has found this order short of accounts")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                pass_time(p.get("at")),
                p.get("created", 0),
                p.get("starved", 0),
                ", ".join(f"{k} {v}" for k, v in sorted((p.get("refusals") or {}).items())) or "—",
            )
            for p in stats.recent
        ),
    )
    return format_html(
        "<p>{}; {} slot(s) starved in all passes that found it short</p><table><thead><tr>"
        "<th>pass</th><th>made</th><th>starved</th><th>refusals by reason</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        "short of accounts now" if stats.troubled else "fine again since the last pass",
        stats.starved_total,
        rows,
    )


def pass_time(value: Any) -> str:
    """A pass's moment as the records keep it (ISO text in JSON), like every other time."""
    try:
        return at_second(datetime.fromisoformat(value)) if value else "—"
    except (TypeError, ValueError):
        return str(value)


def pass_stats_short(stats: OrderPassStats | None) -> str:
    if stats is None:
        return "—"
    refusals = ", ".join(
        f"{k} {v}" for k, v in sorted(stats.refusals.items(), key=lambda kv: -kv[1])[:3]
    )
    return f"made {stats.created}, starved {stats.starved_slots}" + (
        f" ({refusals})" if refusals else ""
    )


# --- an order's or an account's latest tasks (bounded, from their own indexes) ----------------

RECENT = 20


def order_recent_tasks(order_id: int) -> list[TelegramTask]:
    """The order's latest tasks: its live ones, then its latest finished (two index reads)."""
    return _recent(TelegramTask.objects.filter(order_id=order_id), "order_id")


def account_recent_tasks(account_id: int) -> list[TelegramTask]:
    return _recent(
        TelegramTask.objects.filter(telegram_account_id=account_id), "telegram_account_id"
    )


def _recent(tasks: Any, key: str) -> list[TelegramTask]:
    columns = ("id", "action", "status", "attempt", "provider_account_id", "order_id",
               "failure_reason", "available_at", "leased_until", "finished_at")  # fmt: skip
    live = list(tasks.filter(status__in=LIVE_STATUSES).order_by("-id").only(*columns)[:RECENT])
    ended = list(
        tasks.filter(finished_at__isnull=False).order_by("-finished_at").only(*columns)[:RECENT]
    )
    return sorted([*live, *ended], key=lambda t: t.pk, reverse=True)[:RECENT]


def order_tasks_url(order_id: int) -> str:
    return tasks_search_url(order_id)


def account_tasks_url(account_id: int) -> str:
    account = TelegramAccount.objects.filter(pk=account_id).values_list(
        "provider_account_id", flat=True
    )
    return tasks_search_url(account.first() or account_id)


def tasks_search_url(term: object) -> str:
    """The tasks list searched for ``term``, encoded (an id may hold ``&`` or ``=``)."""
    query = urlencode({"q": str(term)})
    return f"{reverse('admin:telegram_tasks_telegramtask_changelist')}?{query}"


def tasks_table(tasks: list[TelegramTask], *, more: str) -> SafeString:
    """A bounded table of tasks (latest first), each linked to its page."""
    if not tasks:
        return format_html("{}", "no tasks")
    rows = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}</td><td>{}</td></tr>",
        (
            (
                reverse("admin:telegram_tasks_telegramtask_change", args=[t.pk]),
                t.pk,
                t.action,
                t.status,
                t.failure_reason or "—",
                t.provider_account_id or "—",
                t.attempt,
                at_second(t.finished_at or t.leased_until or t.available_at),
            )
            for t in tasks
        ),
    )
    return format_html(
        '<table class="tg-tasks"><thead><tr><th>task</th><th>action</th><th>status</th>'
        "<th>reason</th><th>account</th><th>attempt</th><th>when</th></tr></thead>"
        '<tbody>{}</tbody></table><p><a href="{}">all of them in the task list</a></p>',
        rows,
        more,
    )


def at_second(moment: Any) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" if moment else "—"


def at_short(moment: Any, *, now: Any = None) -> str:
    """A moment in a list's column: the time alone when it is today, else the date too."""
    if not moment:
        return "—"
    local = timezone.localtime(moment)
    if local.date() == timezone.localtime(now or timezone.now()).date():
        return f"{local:%H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M}"


def duration(seconds: float) -> str:
    """A span as an operator reads it: "42 s", "3 min", "2 h 05 min", "3 d 4 h"."""
    s = int(abs(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def progress_bar(
    delivered: int, in_flight: int, remaining: int, *, failed: int = 0, failed_url: str = ""
) -> SafeString:
    """Delivered / in flight / still to do, as one bar (and the numbers); the tasks that
    failed on the way (their units went back to "still to do"), linked to them."""
    total = max(delivered + in_flight + remaining, 1)
    parts = [
        (delivered, "#5b9a57", "delivered"),
        (in_flight, "#e07b39", "in flight"),
        (remaining, "#c8c8c8", "not yet in a task"),
    ]
    bars = format_html_join(
        "",
        '<span title="{} {}" style="display:inline-block;height:14px;width:{}%;background:{}">'
        "</span>",
        ((n, label, round(100 * n / total, 2), colour) for n, colour, label in parts if n),
    )
    failures = (
        format_html(
            ' · <a class="tg-failed" href="{}">{} task{} failed</a>',
            failed_url,
            failed,
            "" if failed == 1 else "s",
        )
        if failed
        else format_html("{}", " · no task failed")
    )
    return format_html(
        '<div class="tg-progress" style="width:420px;max-width:100%;border:1px solid '
        'var(--hairline-color);display:flex">{}</div><div>{} delivered · {} in flight · '
        "{} not yet in a task{}</div>",
        bars,
        delivered,
        in_flight,
        remaining,
        failures,
    )
