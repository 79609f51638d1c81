"""What the passes keep between runs: housekeeping's claims heartbeat, what generation found
for the orders short of accounts, and the turns of orders whose params rotate."""

from __future__ import annotations

from django.db import models

from telegram_tasks.conf import order_model_label


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
