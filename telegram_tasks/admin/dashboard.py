"""The operator's dashboard: its own admin page (staff who may view tasks), linked from the
admin index. Every count on it links to the admin list that shows those very rows (the task list
filtered by state, action, reason and the window the count covers; the account list by state);
the page refreshes its numbers by itself. Charts are drawn by Chart.js, served from the app's
static files (no CDN)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from telegram_tasks.admin import reasons
from telegram_tasks.admin.lists import moment_param
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.monitoring import overview
from telegram_tasks.monitoring.activity import RANGES, Activity

# One colour per series, readable on the admin's light and dark themes.
PALETTE = ["#417690", "#5b9a57", "#3aa6a0", "#8a6fbf", "#c9a227", "#e07b39", "#7f8c8d"]
# Failures by whose fault, in warm colours (done is drawn in the cool ones above).
GROUP_COLOURS = {
    "account": "#e07b39",
    "target": "#b5485d",
    "time": "#c9a227",
    "provider": "#8a6fbf",
    "operator": "#9e9e9e",
}
RANGE_COOKIE = "tg_dashboard_range"
# How often the page reloads its numbers (the rollup behind the charts moves once a minute;
# the queue and the hand-outs are read live).
REFRESH_SECONDS = 15


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    if not request.user.has_perm("telegram_tasks.view_telegramtask"):
        raise PermissionDenied
    chosen = request.GET.get("range") or request.COOKIES.get(RANGE_COOKIE)
    board = overview.dashboard(now=timezone.now(), range_key=chosen if chosen in RANGES else None)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "board": board,
        "ranges": list(RANGES.values()),
        "refresh_seconds": REFRESH_SECONDS,
        **page(board),
    }
    response = TemplateResponse(request, "admin/telegram_tasks/dashboard.html", context)
    if request.GET.get("range") in RANGES:  # the operator's choice, kept for the next visit
        response.set_cookie(RANGE_COOKIE, request.GET["range"], max_age=30 * 86400, samesite="Lax")
    return response


def order_change_url_name() -> str | None:
    """The admin's change page of the project's order model (ORDER_MODEL), if registered."""
    Order = get_order_model()
    if not admin.site.is_registered(Order):
        return None
    return f"admin:{Order._meta.app_label}_{Order._meta.model_name}_change"


def tasks_url(**params: Any) -> str:
    return f"{reverse('admin:telegram_tasks_telegramtask_changelist')}?{urlencode(params)}"


def accounts_url(**params: Any) -> str:
    return f"{reverse('admin:telegram_tasks_telegramaccount_changelist')}?{urlencode(params)}"


def window_params(window: tuple[Any, Any]) -> dict[str, str]:
    return {"finished_from": moment_param(window[0]), "finished_to": moment_param(window[1])}


def page(board: overview.Dashboard) -> dict[str, Any]:
    """What the template shows, each count with the link to its list."""
    act = board.activity
    window = window_params(act.whole())
    queues = [
        {
            "queue": q,
            "due_url": tasks_url(state="due", action=q.action, execution_mode__exact=q.mode),
            "queued_url": tasks_url(
                status__exact="queued", action=q.action, execution_mode__exact=q.mode
            ),
        }
        for q in board.queues
    ]
    actions = []
    for action in app_settings.ACTIONS:
        done, failed = act.done_total(action), act.failed_total(action)
        if done or failed:
            actions.append(
                {"action": action, "done": done, "failed": failed,
                 "failed_share": round(100 * failed / (done + failed)),
                 "done_url": tasks_url(status__exact="done", action=action, **window),
                 "failed_url": tasks_url(status__exact="failed", action=action, **window)}
            )  # fmt: skip
    failures = [
        {"reason": reason, "count": n, "words": reasons.words(reason),
         "group": (reasons.group_of(reason) or reasons.BY_KEY["provider"]),
         "url": tasks_url(reason=reason, **window)}
        for reason, n in act.failed_by_reason()
    ]  # fmt: skip
    return {
        "queues": queues,
        "leases_urls": {
            "live": tasks_url(state="running"),
            "expired": tasks_url(state="overdue"),
            "pending": tasks_url(status__exact="pending"),
        },
        "accounts_urls": {
            "active": accounts_url(is_active__exact=1),
            "held": accounts_url(held="yes", is_active__exact=1),
            "cooling": accounts_url(limited="cooling"),
            "capped": accounts_url(limited="capped"),
            "inactive": accounts_url(is_active__exact=0),
        },
        "totals": {
            "done": act.done_total(),
            "failed": act.failed_total(),
            "done_url": tasks_url(status__exact="done", **window),
            "failed_url": tasks_url(status__exact="failed", **window),
        },
        "actions": actions,
        "failures": failures,
        "groups": reasons.GROUPS,
        "starved": [starved_row(s) for s in board.starved_orders],
        "refusal_key": REFUSALS,
        "order_change": order_change_url_name(),
        "charts": charts(board),
    }


# What each refusal of RESERVE means and what an operator can do about it (the key under the
# starved orders, and each refusal's tooltip).
REFUSALS = {
    "locked": ("the account already has a live task for this action",
               "normal while work is in flight; many: add accounts, or make sure the provider "
               "pulls and reports promptly"),
    "hold": ("the account is under a flood-wait hold (FLOOD_WAIT, PEER_FLOOD)",
             "wait; many: Telegram finds the pace too high, raise cooldowns or lower caps"),
    "account_cooldown": ("the tier's cooldown between any two successes of an account runs",
                         "lower the tier's account_cooldown, or add accounts"),
    "cooldown": ("the action's cooldown since the account's last success runs",
                 "lower the action's cooldown, or add accounts"),
    "cap": ("the account reached today's cap for the action",
            "wait for midnight, raise the cap, or add accounts"),
    "account_cap": ("the account reached its tier's successes for today",
                    "wait for midnight, raise the tier's account_daily_cap, or add accounts"),
    "gate": ("a subscribe: the account is already in the channel (an unsubscribe: it is not)",
             "the order cannot get more accounts than are not yet in the channel: add accounts, "
             "lower the quantity, or cancel"),
    "full": ("Telegram said the account is in too many channels (CHANNELS_TOO_MUCH)",
             "free channels (unsubscribe orders, duration_days), add accounts"),
    "channels": ("the account is at its tier's max_channels",
                 "free channels, move accounts to a tier with more channels, add accounts"),
    "dedupe": ("the account already did this one-shot action on this target",
               "each account serves a target once: add accounts or lower the quantity"),
    "invalid_params": ("the order's params do not suit its action",
                       "set its parameters on its page, or cancel it"),
}  # fmt: skip


def refusal_url(reason: str, order: Any) -> str:
    """The list behind a refusal: what holds the accounts back now."""
    action = getattr(order, "action", "")
    if reason == "locked":
        return tasks_url(state="live", action=action)
    if reason == "hold":
        return accounts_url(held="yes", is_active__exact=1)
    if reason in ("cooldown", "account_cooldown"):
        return accounts_url(limited="cooling")
    if reason in ("cap", "account_cap"):
        return accounts_url(limited="capped")
    if reason == "gate":
        link = getattr(order, "link", "")
        return f"{reverse('admin:telegram_tasks_membership_changelist')}?" + urlencode(
            {"q": link, "state__exact": "open"}
        )
    if reason == "dedupe":
        return tasks_url(q=order.pk, status__exact="done")
    if reason == "full":
        return tasks_url(reason="channels_too_much")
    return ""


def starved_row(s: dict[str, Any]) -> dict[str, Any]:
    order = s["order"]
    refusals = [
        {"reason": r, "count": n, "url": refusal_url(r, order),
         "title": " — ".join(REFUSALS.get(r, (r, "")))}
        for r, n in s["refusals"]
    ]  # fmt: skip
    tens = s["per_ten_minutes"]
    peak = max(tens) or 1
    return {
        **s,
        "refusals": refusals,
        "spark": [{"n": n, "height": max(round(16 * n / peak), 1 if n else 0)} for n in tens],
        "trend": "up"
        if s["last_hour"] > s["hour_before"]
        else ("down" if s["last_hour"] < s["hour_before"] else "flat"),
        "target": str(getattr(order, "target", order.link)),
    }


def charts(board: overview.Dashboard) -> dict[str, Any]:
    """The charts' data, as Chart.js takes it (rendered with json_script), with what a click
    on a bar opens: the list of the tasks of that bucket."""
    act = board.activity
    labels = bucket_labels(act)
    windows = [[moment_param(a), moment_param(b)] for a, b in map(act.window, range(len(labels)))]
    tasks = reverse("admin:telegram_tasks_telegramtask_changelist")
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(app_settings.ACTIONS)}
    done = {
        "labels": labels, "windows": windows, "counted": act.counted_buckets,
        "datasets": [
            {"label": action, "data": data, "backgroundColor": colour.get(action, PALETTE[0]),
             "link": f"{tasks}?{urlencode({'status__exact': 'done', 'action': action})}"}
            for action, data in sorted(act.done.items())
        ],
    }  # fmt: skip
    by_group: dict[str, list[int]] = {}
    for (_, reason), data in act.failed.items():
        group = (reasons.group_of(reason) or reasons.BY_KEY["provider"]).key
        series = by_group.setdefault(group, [0] * len(labels))
        for i, n in enumerate(data):
            series[i] += n
    failed = {
        "labels": labels, "windows": windows, "counted": act.counted_buckets,
        "datasets": [
            {"label": f"{g.title}", "data": by_group[g.key],
             "backgroundColor": GROUP_COLOURS[g.key],
             "link": f"{tasks}?{urlencode({'reason': f'group:{g.key}'})}"}
            for g in reasons.GROUPS if g.key in by_group
        ],
    }  # fmt: skip
    passes = {
        "labels": [p["label"] for p in board.passes],
        "datasets": [
            {"label": "tasks created", "data": [p["created"] for p in board.passes],
             "borderColor": PALETTE[0], "backgroundColor": PALETTE[0]},
            {"label": "slots starved", "data": [p["starved_slots"] for p in board.passes],
             "borderColor": GROUP_COLOURS["account"], "backgroundColor": GROUP_COLOURS["account"]},
        ],
    }  # fmt: skip
    return {"done": done, "failed": failed, "passes": passes}


def bucket_labels(act: Activity) -> list[str]:
    """Each bucket's start in local time: "14:05" within a day, "05 14:00" over days."""
    fmt = "%H:%M" if act.range.span <= timedelta(hours=24) else "%d %H:00"
    return [f"{timezone.localtime(b):{fmt}}" for b in act.buckets]
