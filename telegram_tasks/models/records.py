"""What the passes record for the operator's view: one row per generation pass, and the
hourly rollup of tasks created, done and failed (with its running totals and how far it has
counted). Registered with the app's models through ``telegram_tasks.models``."""

from __future__ import annotations

from django.db import models

from telegram_tasks.providers import Provider


class GenerationPass(models.Model):
    """One generation pass, as the dashboard charts it (tasks made, slots starved, how long it
    took). Kept a few days (housekeeping deletes older ones)."""

    started_at = models.DateTimeField(db_index=True)
    seconds = models.FloatField()
    examined = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    starved_orders = models.PositiveIntegerField(default=0)
    starved_slots = models.PositiveIntegerField(default=0)
    unsubscribes = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=dict)  # reason -> count

    class Meta:
        db_table = "telegram_generation_passes"
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"pass at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.created} created"


class TaskHour(models.Model):
    """Tasks created, done and failed (by reason) per action and provider in one hour: the
    dashboard's history and the metrics' counters, rolled up by housekeeping from the tasks that
    changed since its last run, so reading them never scans the ledger."""

    class Outcome(models.TextChoices):
        CREATED = "created"
        DONE = "done"
        FAILED = "failed"

    hour = models.DateTimeField()
    action = models.CharField(max_length=50)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    provider = models.ForeignKey(
        Provider, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "telegram_task_hours"
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "action", "outcome", "reason", "provider"],
                name="tg_task_hour_provider_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.action} {self.outcome} {self.reason} {self.count}"


class TaskMinute(models.Model):
    """Tasks done and failed (by reason) per action in one minute: the dashboard's short ranges
    (the last hour, the last six), rolled up with the hours by the same statement. Kept a few
    hours (``rollup.MINUTES_KEPT``)."""

    minute = models.DateTimeField()
    action = models.CharField(max_length=50)
    outcome = models.CharField(max_length=8, choices=TaskHour.Outcome.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "telegram_task_minutes"
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "action", "outcome", "reason"], name="tg_task_minute_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.action} {self.outcome} {self.reason}"


class TaskTotal(models.Model):
    """Running totals of the same (created, done, failed by reason, per action and provider)
    since the rollup began: they only grow, as Prometheus counters must (hourly rows are deleted
    with the retention, totals are not)."""

    action = models.CharField(max_length=50)
    outcome = models.CharField(max_length=8, choices=TaskHour.Outcome.choices)
    reason = models.CharField(max_length=64, blank=True, default="")
    provider = models.ForeignKey(
        Provider, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "telegram_task_totals"
        constraints = [
            models.UniqueConstraint(
                fields=["action", "outcome", "reason", "provider"],
                name="tg_task_total_provider_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome} {self.reason} {self.count}"


class RollupMark(models.Model):
    """How far the rollup has counted: tasks created and finished up to these moments."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    created_until = models.DateTimeField(null=True)
    finished_until = models.DateTimeField(null=True)

    class Meta:
        db_table = "telegram_rollup_mark"

    def __str__(self) -> str:
        return f"rolled up to {self.finished_until}"


class PassRun(models.Model):
    """When a periodic pass (generation, housekeeping, push dispatch, rollup) last ran and last
    succeeded, whoever ran it (beat or a command): one row per pass, written as each run ends,
    readable by every process. A pass whose beat entry is broken, or whose worker is gone,
    shows here as a time that stops moving (the dashboard, ``/metrics``)."""

    name = models.CharField(primary_key=True, max_length=32)
    last_run_at = models.DateTimeField()  # when the last run began
    last_success_at = models.DateTimeField(null=True, blank=True)  # when the last good one began
    last_seconds = models.FloatField(default=0.0)
    last_error = models.TextField(blank=True, default="")  # of the last run; "" when it succeeded
    runs = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "telegram_pass_runs"

    def __str__(self) -> str:
        return f"{self.name} pass, last run {self.last_run_at:%Y-%m-%d %H:%M:%S}"
