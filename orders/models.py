from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from telegram_tasks.conf import app_settings
from telegram_tasks.links import InvalidTelegramLink, normalize_link, start_link
from telegram_tasks.models import ExecutionMode, default_execution_mode
from telegram_tasks.params import InvalidParams, action_target, clean_params, declared


class Order(models.Model):
    """A customer's order: deliver ``quantity`` units of ``action`` on a Telegram target."""

    class Status(models.TextChoices):
        AWAITING = "awaiting", "Awaiting"
        PENDING = "pending", "Pending"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        PARTIAL = "partial", "Partial"
        CANCELED = "canceled", "Canceled"

    ACTIVE = (Status.AWAITING, Status.PENDING, Status.IN_PROGRESS)

    action = models.CharField(max_length=50)
    link = models.CharField(max_length=255, help_text="Stored normalized (https://t.me/…).")
    post_id = models.PositiveBigIntegerField(null=True, blank=True)
    link_hash = models.CharField(max_length=64, editable=False)
    # The validators say in the form what the CHECK constraints below enforce in the table.
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    remains = models.PositiveIntegerField(
        blank=True, help_text="Units not delivered yet (those in flight included)."
    )
    per_call = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    interval_seconds = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # Higher first when orders of one action want more accounts than there are; within a
    # priority, accounts are shared evenly between orders.
    priority = models.IntegerField(default=0)
    # Subscribe orders: each subscription ends (an automatic unsubscribe of the same account)
    # this many days after it succeeded. None: subscriptions stay.
    duration_days = models.PositiveIntegerField(null=True, blank=True)
    # "pull": the provider pulls its tasks; "push": the dispatcher sends each one.
    execution_mode = models.CharField(
        max_length=8, choices=ExecutionMode.choices, default=default_execution_mode
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AWAITING)
    # Paused by an operator: no new tasks until resumed (the status is left as it was).
    paused_at = models.DateTimeField(null=True, blank=True)
    # What the provider needs beyond the link, as the action declares it (telegram_tasks.params):
    # {"reactions": ["👍", "🔥"]}, {"option": 2}, {"start_param": "ref123"}, {}.
    params = models.JSONField(default=dict, blank=True)
    execution_meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "orders"
        ordering = ["-id"]
        indexes = [
            # The admin: search by link (exact, normalized), date drill-down.
            models.Index(fields=["link_hash"], name="order_link_hash"),
            models.Index(fields=["created_at"], name="order_created"),
            # Generation reads due orders in the order it serves them: active ones, higher
            # priority first, then those waiting longest (never scheduled first).
            models.Index(
                F("priority").desc(),
                F("next_run_at").asc(nulls_first=True),
                "id",
                condition=Q(status__in=["awaiting", "pending", "in_progress"], paused_at=None),
                name="order_due",
            ),
        ]
        permissions = [
            ("cancel_order", "Can cancel orders"),
            ("pause_order", "Can pause and resume orders"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_quantity_gte_1"),
            models.CheckConstraint(condition=Q(per_call__gte=1), name="order_per_call_gte_1"),
            models.CheckConstraint(condition=Q(remains__gte=0), name="order_remains_gte_0"),
            models.CheckConstraint(
                condition=Q(remains__lte=models.F("quantity")), name="order_remains_lte_quantity"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.link} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.remains is None:
            self.remains = self.quantity
        self.normalize_target()
        fields = kwargs.get("update_fields")
        # Params that do not suit the action never reach a provider: refused here as a bad link
        # is (an unknown action is never served, its params are not judged).
        if self.action in app_settings.ACTIONS and (
            fields is None or {"action", "link", "params"} & set(fields)
        ):
            self.normalize_params()
        super().save(*args, **kwargs)

    def normalize_target(self) -> None:
        """Canonical link, post id and link_hash; ValidationError on a non-Telegram link. An
        action that takes a start parameter keeps the link's in the link and in ``params``
        (``link_hash`` names the bot either way)."""
        try:
            target = normalize_link(self.link)
        except InvalidTelegramLink as exc:
            raise ValidationError({"link": str(exc)}) from exc
        if target.post_id is not None:
            if self.post_id is not None and self.post_id != target.post_id:
                message = f"post_id {self.post_id} contradicts the link's post {target.post_id}"
                raise ValidationError({"post_id": message})
            self.post_id = target.post_id
        self.link = target.link
        self.link_hash = target.link_hash
        if "start_param" in declared(self.action) and target.kind == "username":
            params = self.params if isinstance(self.params, dict) else {}
            given = params.get("start_param")
            if target.start_param and given and given != target.start_param:
                message = f"start_param {given!r} contradicts the link's {target.start_param!r}"
                raise ValidationError({"params": message})
            start = target.start_param or given
            if start:
                self.params = {**params, "start_param": start}
                self.link = start_link(target.link, start)

    def normalize_params(self) -> None:
        """``params`` as the action takes them; ValidationError (on ``params``) otherwise."""
        try:
            self.params = clean_params(self.action, self.params)
        except InvalidParams as exc:
            raise ValidationError({"params": ValidationError(str(exc), code=exc.param)}) from exc

    def clean(self) -> None:
        """Every problem at once (the form shows them all), not the first one only."""
        errors: dict[str, list[str]] = {}
        known = self.action in app_settings.ACTIONS
        if not known:
            names = ", ".join(app_settings.ACTIONS)
            errors["action"] = [f"unknown action {self.action!r}; configured: {names}"]
        try:
            self.normalize_target()
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
        target = action_target(self.action) if known else None
        if target == "post" and "link" not in errors and self.post_id is None:
            errors.setdefault("post_id", []).append(
                f"a {self.action} acts on a post: give the post's link "
                "(https://t.me/channel/123) or its post_id"
            )
        if target == "bot" and "link" not in errors and not _is_bot_link(self.link, self.post_id):
            errors.setdefault("link", []).append(
                f"a {self.action} acts on a bot: give its link, t.me/<name>bot or "
                "t.me/<name>bot?start=<parameter> (a bot's username ends in 'bot')"
            )
        if known:
            try:
                self.normalize_params()
            except ValidationError as exc:
                errors.setdefault("params", []).extend(exc.error_dict["params"])
        if errors:
            raise ValidationError(errors)


def _is_bot_link(link: str, post_id: int | None) -> bool:
    target = normalize_link(link)
    return target.kind == "username" and post_id is None and target.link.lower().endswith("bot")
