"""Tasks in the admin: machine-written, read-only, changed through actions."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from telegram_tasks import selectors, services
from telegram_tasks.admin import reasons
from telegram_tasks.admin.buttons import Button, ObjectButtons
from telegram_tasks.admin.display import at_second, at_short, duration, pretty_json
from telegram_tasks.admin.lists import (
    ActionFilter,
    CappedPaginator,
    FinishedFilter,
    MachineWritten,
    ReasonFilter,
    StateFilter,
    UlidCreatedFilter,
)
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import LIVE_STATUSES, TaskStatus, TelegramAccount, TelegramTask
from telegram_tasks.services import handouts
from telegram_tasks.services.settle import grace

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")


STATUS_ORDERING = {
    TaskStatus.QUEUED: "-reserved_until",
    TaskStatus.LEASED: "-leased_until",
    TaskStatus.PENDING: "-leased_until",
    TaskStatus.DONE: "-finished_at",
    TaskStatus.FAILED: "-finished_at",
}


def is_live(task: TelegramTask) -> bool:
    return task.status in LIVE_STATUSES


def of_order(order_id: int) -> Q:
    """An order's tasks as its two partial indexes see them: live, or finished."""
    return Q(order_id=order_id, status__in=LIVE_STATUSES) | Q(
        order_id=order_id, finished_at__isnull=False
    )


def of_account(account_id: int) -> Q:
    return Q(telegram_account_id=account_id, status__in=LIVE_STATUSES) | Q(
        telegram_account_id=account_id, finished_at__isnull=False
    )


@admin.register(TelegramTask)
class TelegramTaskAdmin(ObjectButtons, MachineWritten, admin.ModelAdmin):
    """Tasks are written by machines only; operators change them through admin actions."""

    list_display = (
        "id", "order_no", "action", "status", "account_text", "attempt", "when", "reason",
    )  # fmt: skip
    list_filter = (
        "status", StateFilter, ActionFilter, ReasonFilter, FinishedFilter, "execution_mode",
        "provider", UlidCreatedFilter,
    )  # fmt: skip
    actions = ("requeue_tasks", "fail_tasks")
    # Exact keys only (see get_search_results): a task id, an order id, a provider account id
    # or a provider task id.
    search_fields = ("id",)
    search_help_text = "task id, order id, provider account id or provider task id (exact)"
    list_select_related = False
    show_full_result_count = False
    paginator = CappedPaginator
    list_per_page = 100
    fields = (
        "now",
        "handouts_table",
        "id",
        "order",
        "action",
        "status",
        "telegram_account",
        "provider_account_id",
        "provider",
        "link_hash",
        "per_call",
        "available_at",
        "reserved_until",
        "leased_until",
        "lease_id",
        "attempt",
        "provider_task_id",
        "failure_reason",
        "last_error",
        "payload_pretty",
        "result_pretty",
        "finished_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    buttons = (
        Button("requeue", "Requeue", "requeue_tasks", "requeue",
               "Back to the queue now, same account, fresh reservation", applies=is_live),
        Button("fail", "Fail", "fail_tasks", "fail", "Fail it and roll back its reservation",
               applies=is_live),
    )  # fmt: skip

    class Media:
        css = {"all": ["telegram_tasks/admin.css"]}

    @admin.display(description="payload")
    def payload_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="result")
    def result_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.result)

    @admin.display(description="when", ordering="available_at")
    def when(self, obj: TelegramTask) -> SafeString:
        """The one moment that matters for the task's status, on one line (the list stays
        1366 px wide; every moment is on the task's page, its creation in its id). A lease that
        ran out is marked: nobody reported or extended it."""
        now = timezone.now()
        if obj.status == TaskStatus.LEASED and obj.leased_until and obj.leased_until <= now:
            return format_html(
                '<span class="tg-when tg-overdue" title="lease ended {}: no report, no '
                'extension">lease ran out {} ago</span>',
                at_second(obj.leased_until),
                duration((now - obj.leased_until).total_seconds()),
            )
        if obj.status == TaskStatus.LEASED:
            text = f"lease until {at_short(obj.leased_until, now=now)}"
        elif obj.status == TaskStatus.QUEUED:
            text = f"runs from {at_short(obj.available_at, now=now)}"
        elif obj.status == TaskStatus.PENDING:
            text = f"pending until {at_short(obj.leased_until, now=now)}"
        else:
            text = f"{obj.status} {at_short(obj.finished_at, now=now)}"
        return format_html('<span class="tg-when">{}</span>', text)

    @admin.display(description="failure reason", ordering="failure_reason")
    def reason(self, obj: TelegramTask) -> SafeString | str:
        if not obj.failure_reason:
            return "—"
        return format_html(
            '<span title="{}">{}</span>', reasons.words(obj.failure_reason), obj.failure_reason
        )

    # Short headers: the list keeps its last column in sight at 1366 px.
    @admin.display(description="order", ordering="order_id")
    def order_no(self, obj: TelegramTask) -> int | None:
        return obj.order_id

    @admin.display(description="account", ordering="provider_account_id")
    def account_text(self, obj: TelegramTask) -> str:
        return obj.provider_account_id or "—"

    # --- the task's page ---------------------------------------------------------------------

    @admin.display(description="now")
    def now(self, obj: TelegramTask) -> SafeString:
        """Where the task stands, in a sentence: a lease that ran out says so, and what happens
        next."""
        now = timezone.now()
        account = obj.provider_account_id or "its account"
        hand_out = f"hand-out {obj.attempt + 1} of {app_settings.MAX_ATTEMPTS}"
        if obj.status == TaskStatus.LEASED and obj.leased_until and obj.leased_until <= now:
            return format_html(
                '<span class="tg-overdue">Overdue: the lease ran out {} ago</span> ({}), with no '
                "report and no extension ({} to {}). The next pull hands it out again if it has "
                "hand-outs left; else housekeeping ends it (<code>lease_abandoned</code>) from {}.",
                duration((now - obj.leased_until).total_seconds()),
                at_second(obj.leased_until),
                hand_out,
                account,
                at_second(obj.leased_until + grace()),
            )
        if obj.status == TaskStatus.LEASED:
            return format_html(
                "Leased to {} ({}) until {}: {} left.",
                account,
                hand_out,
                at_second(obj.leased_until),
                duration((obj.leased_until - now).total_seconds()) if obj.leased_until else "—",
            )
        if obj.status == TaskStatus.PENDING:
            return format_html(
                "Reported pending by the provider; waits for its final report until {} (then "
                "it fails, <code>pending_timeout</code>).",
                at_second(obj.leased_until),
            )
        if obj.status == TaskStatus.QUEUED:
            due = obj.available_at <= now
            return format_html(
                "Queued for {}: {}; its reservation holds the account until {}.",
                account,
                "due now, the next pull hands it out"
                if due
                else f"due at {at_second(obj.available_at)}",
                at_second(obj.reserved_until),
            )
        if obj.status == TaskStatus.DONE:
            return format_html("Done at {} by {}.", at_second(obj.finished_at), account)
        return format_html(
            "Failed at {}: {} (<code>{}</code>){}.",
            at_second(obj.finished_at),
            reasons.words(obj.failure_reason) or "no reason recorded",
            obj.failure_reason or "—",
            f"; the provider said: {obj.last_error[:300]}" if obj.last_error else "",
        )

    @admin.display(description="hand-outs")
    def handouts_table(self, obj: TelegramTask) -> SafeString | str:
        """Each lease of the task: when, to which account, how it ended, the error."""
        rows = selectors.task_handouts(obj)
        if not rows:
            return "never handed out" if obj.lease_id is None else "not recorded"
        now = timezone.now()
        body = format_html_join(
            "",
            '<tr class="{}"><td>{}</td><td class="tg-nowrap">{}</td><td>{}</td><td><code>{}'
            '</code></td><td class="tg-nowrap">{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    "tg-overdue" if outcome.startswith("lease ran out") else "",
                    h.number,
                    at_second(h.leased_at),
                    obj.provider_account_id or "—",
                    h.lease_id,
                    at_second(h.ended_at) if h.ended_at else "—",
                    outcome,
                    h.error or "—",
                )
                for h in rows
                for outcome in [handout_outcome(h, obj, last=h is rows[-1], now=now)]
            ),
        )
        kept = "" if len(rows) < handouts.KEEP else f" (the last {handouts.KEEP} are kept)"
        return format_html(
            '<table class="tg-tasks tg-handouts"><thead><tr><th>#</th><th>handed out</th>'
            "<th>account</th><th>lease</th><th>ended</th><th>how it ended</th><th>error</th>"
            "</tr></thead><tbody>{}</tbody></table>{}",
            body,
            kept,
        )

    @admin.action(
        description="Requeue (back to the queue now, same account, fresh reservation)",
        permissions=["requeue"],
    )
    def requeue_tasks(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        requeued, refused = services.tasks_requeue(task_ids=ids, now=timezone.now())
        skipped = len(ids) - requeued - refused
        self.message_user(
            request,
            f"{requeued} task(s) requeued; {refused} could not keep their account (failed as "
            f"lock_lost, or settled as done); {skipped} already finished, left alone.",
            messages.SUCCESS if not refused else messages.WARNING,
        )

    @admin.action(description="Fail (and roll back their reservations)", permissions=["fail"])
    def fail_tasks(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        failed = services.tasks_fail(reason=Reason.ADMIN_FAILED, now=timezone.now(), task_ids=ids)
        self.message_user(request, f"{failed} task(s) failed.", messages.SUCCESS)

    def has_requeue_permission(self, request) -> bool:
        return request.user.has_perm("telegram_tasks.requeue_telegramtask")

    def has_fail_permission(self, request) -> bool:
        return request.user.has_perm("telegram_tasks.fail_telegramtask")

    def get_search_results(
        self, request: Any, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if ULID.match(term):
            return queryset.filter(pk=term.upper()), False
        if term.isdigit():
            return queryset.filter(of_order(int(term))), False
        found = Q(provider_task_id=term)
        account = (
            TelegramAccount.objects.filter(provider_account_id=term)
            .values_list("pk", flat=True)
            .first()
        )
        if account is not None:
            found |= of_account(account)
        return queryset.filter(found), False

    def get_queryset(self, request: Any) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.GET.get("status__exact") == TaskStatus.DONE:
            # Always true of a done task; said so the finished tasks' index (by finished_at)
            # can serve the list.
            queryset = queryset.filter(finished_at__isnull=False)
        return queryset

    def get_ordering(self, request: Any) -> list[str]:
        # Each status filter reads that status's own index, newest first by the time it keeps;
        # by the key, a rare status would be searched for through the whole history.
        if request.GET.get(ReasonFilter.parameter_name):
            return ["-finished_at"]
        state = request.GET.get(StateFilter.parameter_name)
        if state in ("due", "later"):
            return ["available_at", "id"]
        if state in ("running", "overdue"):
            return ["leased_until", "id"]
        if any(p in request.GET for p in FinishedFilter.parameters):
            return ["-finished_at"]
        return [STATUS_ORDERING.get(request.GET.get("status__exact", ""), "-id")]


HOW = {
    handouts.DONE: "done",
    handouts.FAILED: "failed",
    handouts.RETRY: "failed, queued to run again",
    handouts.EXPIRED: "lease ran out (no report): handed out again",
    handouts.REQUEUED: "requeued by an operator",
    handouts.RELEASED: "handed back by the provider",
}


def handout_outcome(h: selectors.Handout, task: TelegramTask, *, last: bool, now: Any) -> str:
    """How one hand-out ended, in words; the running one says where it stands."""
    if h.end == handouts.FAILED and last and task.failure_reason:
        return f"failed: {reasons.words(task.failure_reason)}"
    if h.end:
        return HOW.get(h.end, h.end)
    if not last:
        return "—"
    if task.status == TaskStatus.PENDING:
        return f"pending since {at_second(h.pending_at)}" if h.pending_at else "pending"
    if task.status == TaskStatus.LEASED and task.leased_until and task.leased_until <= now:
        return f"lease ran out {duration((now - task.leased_until).total_seconds())} ago"
    if task.status == TaskStatus.LEASED:
        return "running"
    return "—"
