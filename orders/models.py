from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from orders import money
from telegram_tasks.conf import app_settings
from telegram_tasks.links import InvalidTelegramLink, normalize_link, start_link
from telegram_tasks.models import ExecutionMode, default_execution_mode
from telegram_tasks.params import InvalidParams, action_target, clean_params, declared


def _money_field(**kwargs: Any) -> models.DecimalField:
    return models.DecimalField(
        max_digits=money.MONEY_DIGITS, decimal_places=money.MONEY_PLACES, **kwargs
    )


class Service(models.Model):
    """An entry of the catalogue the panel API sells (``action=services``): what an order of
    it does (action, lifetime, priority, mode, the action's params), its price per 1000 units,
    and what a customer may ask of it (min..max, drip-feed, cancel, refill)."""

    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True, default="")
    action = models.CharField(max_length=50)
    rate = models.DecimalField(
        max_digits=money.RATE_DIGITS,
        decimal_places=money.RATE_PLACES,
        validators=[MinValueValidator(0)],
        help_text="Price per 1000 units, in the install's currency (PANEL_CURRENCY).",
    )
    min_quantity = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    max_quantity = models.PositiveIntegerField(default=10000, validators=[MinValueValidator(1)])
    dripfeed = models.BooleanField(default=False, help_text="Orders may use runs and interval.")
    cancel = models.BooleanField(default=False, help_text="Customers may cancel orders.")
    refill_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Subscribe services: refills allowed this many days "
        "after an order completes (empty: no refill)."
    )  # fmt: skip
    duration_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Subscribe services: each subscription ends this many "
        "days after it began (empty: it stays)."
    )  # fmt: skip
    priority = models.IntegerField(default=0)
    execution_mode = models.CharField(
        max_length=8, choices=ExecutionMode.choices, default=default_execution_mode
    )
    # The action's parameters every order of this service gets (a "Reactions 👍" service:
    # {"reactions": ["👍"]}); see orders.params.
    params = models.JSONField(default=dict, blank=True)
    # The provider fleets whose accounts may do its orders' work (none: any); copied to each
    # order placed through the panel API.
    providers = models.ManyToManyField(
        "telegram_tasks.Provider", blank=True, related_name="services",
        help_text="Only these providers' accounts do its orders (none selected: any provider).",
    )  # fmt: skip
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "panel_services"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0), name="service_rate_gte_0"),
            models.CheckConstraint(condition=Q(min_quantity__gte=1), name="service_min_gte_1"),
            models.CheckConstraint(
                condition=Q(max_quantity__gte=F("min_quantity")), name="service_max_gte_min"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.action not in app_settings.ACTIONS:
            names = ", ".join(app_settings.ACTIONS)
            errors["action"] = [f"unknown action {self.action!r}; configured: {names}"]
        if self.min_quantity and self.max_quantity and self.max_quantity < self.min_quantity:
            errors["max_quantity"] = ["must be at least the minimum"]
        gate = self.action in app_settings.ACTIONS and app_settings.policy(self.action).gate
        if gate != "subscribe" and (self.refill_days or self.duration_days):
            errors["refill_days"] = ["refill and subscription lifetime are for subscribe services"]
        if not errors and self.action in app_settings.ACTIONS:
            from orders.params import InvalidParams, service_params

            try:
                self.params = service_params(self.action, self.params)
            except InvalidParams as exc:
                errors["params"] = [str(exc)]
        if errors:
            raise ValidationError(errors)


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
    # Why the broker ended it, when it did (a failure reason: ``order_canceled``,
    # ``target_unavailable`` …); empty for an order that completed or still runs.
    end_reason = models.CharField(max_length=64, blank=True, default="", editable=False)
    # What the provider needs beyond the link, as the action declares it (telegram_tasks.params):
    # {"reactions": ["👍", "🔥"]}, {"option": 2}, {"start_param": "ref123"}, {}.
    params = models.JSONField(default=dict, blank=True)
    # Routing: only these provider fleets' accounts get its tasks (none: any enabled provider).
    # An optional field of the order model protocol (telegram_tasks' generation reads it).
    providers = models.ManyToManyField(
        "telegram_tasks.Provider", blank=True, related_name="orders",
        help_text="Only these providers' accounts get its tasks (none selected: any provider).",
    )  # fmt: skip
    execution_meta = models.JSONField(default=dict, blank=True)
    # The panel API: who bought the order, of which service, what it cost. Empty for an
    # operator's order (no money moves). ``charge`` is taken with the order; ``refund`` (its
    # undelivered part) when it ends short, at ``settled_at``.
    customer = models.ForeignKey(
        "orders.Customer", on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    charge = _money_field(default=0, editable=False)
    refund = _money_field(default=0, editable=False)
    settled_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The first start count a provider reported (a report's data.start_count), filled by the
    # report's own statement (telegram_tasks' optional order column).
    start_count = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    # A refill: a free order of its own re-delivering the drops of this one.
    refill_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="refills",
        editable=False,
    )  # fmt: skip
    # An add's Idempotency-Key (or request_id): a retry answers this order.
    request_key = models.CharField(max_length=128, null=True, blank=True, editable=False)
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
            models.Index(
                fields=["refill_of"], condition=Q(refill_of__isnull=False), name="order_refills"
            ),
            # Panel orders not settled yet (the settle sweep's work list): settled ones leave.
            models.Index(
                fields=["id"],
                condition=Q(customer__isnull=False, settled_at__isnull=True),
                name="order_unsettled",
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
            models.UniqueConstraint(
                fields=["customer", "request_key"],
                condition=Q(request_key__isnull=False),
                name="order_request_key_unique",
            ),
            models.CheckConstraint(condition=Q(charge__gte=0), name="order_charge_gte_0"),
            models.CheckConstraint(
                condition=Q(refund__gte=0, refund__lte=F("charge")),
                name="order_refund_within_charge",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target} · {self.get_status_display()}"

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

    @property
    def target(self) -> str:
        """The link as an operator writes it, with the post: ``t.me/news/42``."""
        short = self.link.removeprefix("https://")
        if self.post_id is not None and "?" not in short:
            return f"{short}/{self.post_id}"
        return short

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


# The panel's customers, keys and balance ledger: defined in ``customers``, imported here so
# Django registers them with the app's models.
from orders.customers import ApiKey, BalanceEntry, Customer  # noqa: E402, F401
