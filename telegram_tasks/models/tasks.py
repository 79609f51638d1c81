"""The ledger of tasks: each task of an order for one account, its status and hand-outs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from telegram_tasks.conf import app_settings, order_model_label
from telegram_tasks.models.accounts import TelegramAccount
from telegram_tasks.providers import Provider, default_provider_id
from telegram_tasks.ulid import new_ulid


class ExecutionMode(models.TextChoices):
    """How an order's tasks reach the provider: pulled (``/tasks/pull``) or pushed (the
    dispatcher POSTs each to PROVIDER_PUSH_URL)."""

    PULL = "pull", "pull"
    PUSH = "push", "push"


def default_execution_mode() -> str:
    return app_settings.DEFAULT_EXECUTION_MODE


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    LEASED = "leased", "leased"
    PENDING = "pending", "pending"
    DONE = "done", "done"
    FAILED = "failed", "failed"


LIVE_STATUSES = (TaskStatus.QUEUED, TaskStatus.LEASED, TaskStatus.PENDING)


class TelegramTask(models.Model):
    """One unit of work handed to the provider: one account performs one action once."""

    Status = TaskStatus
    IN_FLIGHT = LIVE_STATUSES
    FINAL = (Status.DONE, Status.FAILED)

    id = models.CharField(primary_key=True, max_length=26, default=new_ulid, editable=False)
    # FK columns are served by the composite (…, status) indexes below; single-column indexes
    # would only slow the bulk inserts of generation. No FOREIGN KEY constraint in the database
    # for the order and the account: each would check every inserted task by a trigger at
    # commit (a tenth of a generation pass). The service is the ledger's only writer; deletes
    # through Django still refuse (PROTECT) or follow (SET_NULL) as declared.
    # Null only for an automatic unsubscribe whose subscribe order was deleted (a membership
    # outlives its order): the account still leaves the channel.
    order = models.ForeignKey(
        order_model_label(),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="telegram_tasks",
        db_index=False,
        db_constraint=False,
    )
    action = models.CharField(max_length=50)
    link_hash = models.CharField(max_length=64)
    telegram_account = models.ForeignKey(
        TelegramAccount,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tasks",
        db_index=False,
        db_constraint=False,
    )
    provider_account_id = models.CharField(max_length=255, null=True, blank=True)
    # Its account's provider, written with the task (generation, the automatic unsubscribes):
    # each provider's queues are read on indexes led by it, and every provider endpoint finds
    # only the caller's tasks. No constraint, as for the order and the account.
    provider = models.ForeignKey(
        Provider,
        on_delete=models.DO_NOTHING,
        related_name="+",
        default=default_provider_id,
        db_index=False,
        db_constraint=False,
    )
    # Set for an automatic unsubscribe (a membership whose time is up): its units are not the
    # order's, and it runs whatever the order's state.
    membership = models.ForeignKey(
        "Membership",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="unsubscribe_tasks",
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Its order's mode when it was made: a push task is never pulled, a pull task never pushed.
    execution_mode = models.CharField(
        max_length=8, choices=ExecutionMode.choices, db_default=ExecutionMode.PULL.value
    )
    # Push: the last dispatch never reached the provider (a connection error, a timeout, 429 or
    # 5xx); the next dispatch is the same hand-out again (same lease_id, no attempt counted).
    # Database defaults: generation writes tasks with COPY, naming only the columns it sets.
    redeliver = models.BooleanField(db_default=False)
    dispatch_errors = models.PositiveIntegerField(db_default=0)  # in a row, for the backoff
    per_call = models.PositiveIntegerField(default=1)
    available_at = models.DateTimeField(default=timezone.now)
    # The RESERVE lock lapses at this moment unless a lease or a pending report re-arms it.
    reserved_until = models.DateTimeField(null=True, blank=True)
    # When the current hand-out began and ends (for a pending task: when it times out).
    leased_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    # Identifies the current hand-out (one per pull); null until the task is first handed out.
    lease_id = models.CharField(max_length=26, null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    payload = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    provider_task_id = models.CharField(max_length=255, null=True, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    # Each hand-out (lease) of the task, newest last: when, its lease id, how it ended, the
    # error; written by the statements that lease and end them (``services.handouts``). Null
    # until the task is first handed out.
    handouts = models.JSONField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "telegram_tasks"
        # The id is a ULID: newest first is the primary key backwards, never a sort.
        ordering = ["-id"]
        # Every index matches a query exactly, and every one that holds finished tasks holds
        # only them: costs follow live work, not the size of the history (see docs/operations.md,
        # "Growth"). A new task enters six: the key, its order's and its account's live tasks,
        # its expiry, its provider's queue (pull or push), and the queue by account. The queues
        # lead with the provider: a provider's pull (or dispatch) reads its own queue only.
        indexes = [
            models.Index(
                fields=["order"], condition=Q(status__in=LIVE_STATUSES), name="tg_task_order_live"
            ),
            models.Index(
                fields=["order", "finished_at"],
                condition=Q(finished_at__isnull=False),
                name="tg_task_order_finished",
            ),
            models.Index(
                fields=["telegram_account"],
                condition=Q(status__in=LIVE_STATUSES),
                name="tg_task_account_live",
            ),
            # Today's successes of an account (caps restored), its recent tasks (admin).
            models.Index(
                fields=["telegram_account", "finished_at"],
                condition=Q(finished_at__isnull=False),
                name="tg_task_account_finished",
            ),
            # Housekeeping's sweep and heal, retention, the dashboard's hourly rollup.
            models.Index(
                fields=["finished_at"],
                condition=Q(finished_at__isnull=False),
                name="tg_task_finished",
            ),
            # Queued tasks whose reservation lapsed (housekeeping's expiry).
            models.Index(
                fields=["reserved_until"],
                condition=Q(status=TaskStatus.QUEUED),
                name="tg_task_queued_expiry",
            ),
            # The pull query: a provider's queued tasks oldest first (leases that have run out:
            # below).
            models.Index(
                fields=["provider", "available_at", "id"],
                condition=Q(status=TaskStatus.QUEUED, execution_mode=ExecutionMode.PULL),
                name="tg_task_pull_queue",
            ),
            # The push dispatcher's: the same for push tasks.
            models.Index(
                fields=["provider", "available_at", "id"],
                condition=Q(status=TaskStatus.QUEUED, execution_mode=ExecutionMode.PUSH),
                name="tg_task_push_queue",
            ),
            # A pull for some accounts only (an account has at most one queued task per
            # action); a provider's queued tasks of both modes (disabling it).
            models.Index(
                fields=["provider", "provider_account_id", "available_at", "id"],
                condition=Q(status=TaskStatus.QUEUED),
                name="tg_task_queue_account",
            ),
            models.Index(
                fields=["leased_until"],
                condition=Q(status=TaskStatus.LEASED),
                name="tg_task_pull_expired",
            ),
            models.Index(
                fields=["leased_until"],
                condition=Q(status=TaskStatus.PENDING),
                name="tg_task_pending",
            ),
            models.Index(
                fields=["membership"],
                condition=Q(membership__isnull=False),
                name="tg_task_membership",
            ),
            # Admin search and the failure-reason filter.
            models.Index(
                fields=["provider_task_id"],
                condition=Q(provider_task_id__isnull=False),
                name="tg_task_provider_task",
            ),
            models.Index(
                fields=["failure_reason", "finished_at"],
                condition=Q(status=TaskStatus.FAILED),
                name="tg_task_failed_reason",
            ),
            # An order's failed tasks, counted for the admin's order list and page.
            models.Index(
                fields=["order"],
                condition=Q(status=TaskStatus.FAILED),
                name="tg_task_order_failed",
            ),
            # The admin's status filter on failed tasks, newest first (failures may be rare).
            models.Index(
                fields=["finished_at"],
                condition=Q(status=TaskStatus.FAILED),
                name="tg_task_failed",
            ),
        ]
        permissions = [
            ("requeue_telegramtask", "Can requeue tasks"),
            ("fail_telegramtask", "Can fail tasks"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(per_call__gte=1), name="tg_task_per_call_gte_1"),
            models.CheckConstraint(
                condition=Q(status__in=TaskStatus.values),
                name="tg_task_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.id} ({self.status})"
