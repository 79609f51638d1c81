from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from telegram_tasks.conf import app_settings, order_model_label

# The provider fleets (registered with the app's models here, like the records below).
from telegram_tasks.providers import Provider, ProviderToken, default_provider_id  # noqa: F401

# ULIDs live in their own module; re-exported here, where migrations name ``new_ulid``.
from telegram_tasks.ulid import CROCKFORD, new_ulid, ulid_floor, ulid_time  # noqa: F401


class TelegramAccount(models.Model):
    """A Telegram account run by a provider; synced by its provider, picked by generation."""

    # Its fleet: only this provider syncs it, is handed its tasks and reports them. (No index of
    # its own: the unique (provider, provider_account_id) leads with it.)
    provider = models.ForeignKey(
        Provider,
        on_delete=models.PROTECT,
        related_name="accounts",
        default=default_provider_id,
        db_index=False,
    )
    # The provider's id of the account: unique per provider (two providers may use one id).
    provider_account_id = models.CharField(max_length=255, null=True, blank=True)
    phone = models.CharField(max_length=32, blank=True, default="", db_index=True)
    is_active = models.BooleanField(default=True, db_index=True)
    # Which TELEGRAM_TASKS["TIERS"] limits apply: channels, account-wide cooldown and cap, and
    # per-action overrides.
    tier = models.CharField(max_length=32, default="default")
    # A flood wait (FLOOD_WAIT, PEER_FLOOD) keeps the account off every action until then: the
    # ledger's copy of the Redis hold, so pulls skip its tasks and a rebuild restores it.
    held_until = models.DateTimeField(null=True, blank=True)
    # Why and since when the hold runs (the failure reason that set it: ``flood_wait``,
    # ``peer_flood`` …), for the operator; written with ``held_until``.
    hold_reason = models.CharField(max_length=64, blank=True, default="")
    held_since = models.DateTimeField(null=True, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "telegram_accounts"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_account_id"], name="tg_account_provider_unique"
            )
        ]
        indexes = [
            # Selection scans active accounts by id from a cursor.
            models.Index(fields=["id"], condition=Q(is_active=True), name="tg_account_active_id"),
            models.Index(
                fields=["held_until"],
                condition=Q(held_until__isnull=False),
                name="tg_account_held",
            ),
        ]
        permissions = [
            ("manage_telegramaccount", "Can deactivate, reactivate and clear holds of accounts"),
        ]

    def __str__(self) -> str:
        return self.provider_account_id or self.phone or f"account #{self.pk}"


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


class ClaimsCheckpoint(models.Model):
    """The last heartbeat housekeeping wrote to Redis, kept in the ledger too: a Redis whose
    heartbeat is older than this one has lost writes (a failover to a lagging replica, a restart
    from an old snapshot) even if its marker survived. One row."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    heartbeat_at = models.DateTimeField()
    # The Redis servers (each primary of a cluster) and the id of their run when housekeeping
    # last looked: a restart or a failover changes them, and only then may writes have been
    # lost, so only then does heal re-read the ledger (``services.heal``).
    nodes = models.JSONField(default=dict, blank=True)
    # A ROLLBACK after a commit met Redis down at this moment: housekeeping releases the locks
    # of the tasks that ended since (the sweep), then clears it.
    sweep_from = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "telegram_claims_checkpoint"

    def __str__(self) -> str:
        return f"claims heartbeat at {self.heartbeat_at:%Y-%m-%d %H:%M:%S}"


class Membership(models.Model):
    """An account in a channel: opened by a done subscribe, closed by a done unsubscribe, in the
    same transaction as the report. The ledger behind ``max_channels`` (open memberships are the
    account's channels) and behind the link states a rebuild restores. A membership whose order
    bought ``duration_days`` is due at ``due_at``: then the account unsubscribes."""

    class State(models.TextChoices):
        OPEN = "open", "subscribed"
        CLOSED = "closed", "unsubscribed"

    account = models.ForeignKey(
        TelegramAccount, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    link_hash = models.CharField(max_length=64)
    link = models.CharField(max_length=255)
    order = models.ForeignKey(
        order_model_label(),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="memberships",
        db_index=False,
    )
    subscribed_at = models.DateTimeField()
    due_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    subscribe_task_id = models.CharField(max_length=26, null=True, blank=True)
    unsubscribe_task_id = models.CharField(max_length=26, null=True, blank=True)
    # Automatic unsubscribes tried so far, and when the next may be (backoff after a failure).
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "telegram_memberships"
        ordering = ["-id"]
        constraints = [
            # One open membership per account and channel.
            models.UniqueConstraint(
                fields=["account", "link_hash"],
                condition=Q(state="open"),
                name="tg_membership_one_open",
            ),
        ]
        indexes = [
            models.Index(fields=["order", "state"], name="tg_membership_order"),
            models.Index(fields=["account", "subscribed_at"], name="tg_membership_account"),
            models.Index(fields=["link_hash"], name="tg_membership_link"),
            models.Index(
                fields=["due_at"],
                condition=Q(state="open", due_at__isnull=False),
                name="tg_membership_due",
            ),
            models.Index(fields=["subscribed_at"], name="tg_membership_subscribed"),
            models.Index(
                fields=["unsubscribed_at"],
                condition=Q(unsubscribed_at__isnull=False),
                name="tg_membership_unsubscribed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} in {self.link} ({self.get_state_display()})"


class OneShot(models.Model):
    """A one-shot success (a view of a post, a reaction) of an account: the ledger behind the
    dedupe key COMMIT sets, written in the same statement that marks the task done. One row per
    (account, action, target) however many tasks it took, kept for DEDUPE_TTL_SECONDS: a
    rebuild restores the dedupe keys from here, so its cost follows the facts still in force,
    not the finished tasks, and retention may delete tasks without losing one."""

    account = models.ForeignKey(
        TelegramAccount, on_delete=models.CASCADE, related_name="one_shots", db_index=False
    )
    action = models.CharField(max_length=32)
    link_hash = models.CharField(max_length=64)
    post_id = models.BigIntegerField(null=True, blank=True)
    done_at = models.DateTimeField()

    class Meta:
        db_table = "telegram_one_shots"
        verbose_name = "one-shot success"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "action", "link_hash", "post_id"],
                nulls_distinct=False,
                name="tg_one_shot_unique",
            ),
        ]
        indexes = [models.Index(fields=["done_at"], name="tg_one_shot_done")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.action} {self.link_hash[:12]}/{self.post_id}"


class OrderPassStats(models.Model):
    """What the last generation passes that found an order short of accounts saw: tasks made,
    slots starved, and the refusals by reason — the answer to "why is this order slow?". One
    row per order, written by a pass that finds it short (and by the next one that does not,
    so the row never outlives the trouble); a healthy order costs a pass no write. Diagnostics
    only: the table is unlogged (a crash empties it, the next passes fill it again)."""

    order = models.OneToOneField(
        order_model_label(), on_delete=models.CASCADE, primary_key=True, related_name="pass_stats"
    )
    last_pass_at = models.DateTimeField()
    created = models.PositiveIntegerField(default=0)  # in the last pass
    starved_slots = models.PositiveIntegerField(default=0)  # in the last pass
    refusals = models.JSONField(default=dict)  # reason -> count, in the last pass
    troubled = models.BooleanField(default=False)  # the last pass starved some of its slots
    starved_total = models.PositiveBigIntegerField(default=0)
    # The last few passes, newest first: [{"at", "created", "starved", "refusals"}, …].
    recent = models.JSONField(default=list)
    # Slots starved per ten minutes, the last two hours: {"<Unix seconds of the ten minutes'
    # start>": slots}, for "starved in the last hour" and its trend.
    starved_recent = models.JSONField(default=dict)

    class Meta:
        db_table = "telegram_order_pass_stats"
        verbose_name_plural = "order pass stats"

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.created} made, {self.starved_slots} starved"


class OrderTurn(models.Model):
    """How many tasks an order whose params rotate (a mix of reactions) has had so far: the
    next task takes the emoji of that turn, so the mix spreads evenly over the order's tasks
    across passes. Written by generation, under the order's row lock, in the pass that makes
    the tasks; only for orders of several emoji."""

    order = models.OneToOneField(
        order_model_label(), on_delete=models.CASCADE, primary_key=True, related_name="turn"
    )
    made = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "telegram_order_turns"

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.made} tasks made"


# The operator's view records (pass records, hourly rollup): defined in ``records``, imported
# here so Django registers them with the app's models.
from telegram_tasks.records import (  # noqa: E402, F401
    GenerationPass,
    PassRun,
    RollupMark,
    TaskHour,
    TaskMinute,
    TaskTotal,
)
