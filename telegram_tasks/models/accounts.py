"""The providers' Telegram accounts, and what the ledger keeps of each: the channels it is in
(``Membership``) and its one-shot successes (``OneShot``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from telegram_tasks.conf import order_model_label
from telegram_tasks.providers import Provider, default_provider_id


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
