"""The host's order model, under its own name and app label: what the order model protocol of
docs/reuse.md asks, with status values and a column name of its own."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from telegram_tasks.links import InvalidTelegramLink, normalize_link
from telegram_tasks.models import ExecutionMode, default_execution_mode
from telegram_tasks.params import InvalidParams, clean_params


class Purchase(models.Model):
    class Status(models.TextChoices):
        AWAITING = "new", "New"
        PENDING = "waiting", "Waiting"
        IN_PROGRESS = "running", "Running"
        COMPLETED = "done", "Done"
        PARTIAL = "partial", "Partly done"
        CANCELED = "cancelled", "Cancelled"

    ACTIVE = (Status.AWAITING, Status.PENDING, Status.IN_PROGRESS)

    customer = models.CharField(max_length=100, blank=True)  # the host's own field
    action = models.CharField(max_length=50)
    link = models.CharField(max_length=255)
    post_id = models.PositiveBigIntegerField(null=True, blank=True)
    link_hash = models.CharField(max_length=64, editable=False)
    quantity = models.PositiveIntegerField()
    remains = models.PositiveIntegerField(blank=True)
    per_call = models.PositiveIntegerField(default=1)
    interval_seconds = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(default=0)
    duration_days = models.PositiveIntegerField(null=True, blank=True)
    execution_mode = models.CharField(
        max_length=8, choices=ExecutionMode.choices, default=default_execution_mode
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.AWAITING, db_column="state"
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)  # what the action needs beyond the link
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"purchase {self.pk}: {self.action} {self.link}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.remains is None:
            self.remains = self.quantity
        try:
            target = normalize_link(self.link)
        except InvalidTelegramLink as exc:
            raise ValidationError({"link": str(exc)}) from exc
        self.link, self.link_hash = target.link, target.link_hash
        self.post_id = self.post_id if target.post_id is None else target.post_id
        try:
            self.params = clean_params(self.action, self.params)
        except InvalidParams as exc:
            raise ValidationError({"params": str(exc)}) from exc
        super().save(*args, **kwargs)
