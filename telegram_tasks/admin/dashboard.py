"""The operator's dashboard: its own admin page (staff who may view tasks), linked from the
admin index. Charts are drawn by Chart.js, served from the app's static files (no CDN)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from telegram_tasks import dashboard
from telegram_tasks.conf import get_order_model

# One colour per series, readable on the admin's light and dark themes.
PALETTE = ["#417690", "#e07b39", "#5b9a57", "#b5485d", "#8a6fbf", "#c9a227", "#3aa6a0"]


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    if not request.user.has_perm("telegram_tasks.view_telegramtask"):
        raise PermissionDenied
    board = dashboard.dashboard(now=timezone.now())
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "board": board,
        "charts": charts(board),
        "order_change": order_change_url_name(),
    }
    return TemplateResponse(request, "admin/telegram_tasks/dashboard.html", context)


def order_change_url_name() -> str | None:
    """The admin's change page of the project's order model (ORDER_MODEL), if registered."""
    Order = get_order_model()
    if not admin.site.is_registered(Order):
        return None
    return f"admin:{Order._meta.app_label}_{Order._meta.model_name}_change"


def charts(board: dashboard.Dashboard) -> dict[str, Any]:
    """The charts' data, as Chart.js takes it (rendered with json_script)."""
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(board.done_by_action)}
    hourly = {
        "labels": board.hours,
        "datasets": [
            {"label": f"{action} done", "data": data, "backgroundColor": colour[action],
             "stack": "done"}
            for action, data in board.done_by_action.items()
        ]
        + [
            {"label": f"{action} failed", "data": data, "backgroundColor": colour[action] + "88",
             "stack": "failed"}
            for action, data in board.failed_by_action.items()
        ],
    }  # fmt: skip
    reasons = {
        "labels": [r for r, _ in board.failed_by_reason],
        "datasets": [
            {"label": "failed tasks (48 h)", "data": [n for _, n in board.failed_by_reason],
             "backgroundColor": PALETTE[3]}
        ],
    }  # fmt: skip
    passes = {
        "labels": [p["label"] for p in board.passes],
        "datasets": [
            {"label": "tasks created", "data": [p["created"] for p in board.passes],
             "borderColor": PALETTE[0], "backgroundColor": PALETTE[0]},
            {"label": "slots starved", "data": [p["starved_slots"] for p in board.passes],
             "borderColor": PALETTE[1], "backgroundColor": PALETTE[1]},
        ],
    }  # fmt: skip
    return {"hourly": hourly, "reasons": reasons, "passes": passes}
