"""The panel's customers: their API keys and the balance ledger. (Registered through
``orders.models``.)"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from orders import money


def default_currency() -> str:
    return money.currency()


class Customer(models.Model):
    """A panel or reseller buying through ``/api/v2``. ``balance`` is a cache of the sum of its
    ledger rows (``BalanceEntry``), changed only in the transaction that writes a row, by a
    conditional update that cannot take it below zero (and a CHECK behind it)."""

    name = models.CharField(max_length=150, unique=True)
    currency = models.CharField(max_length=3, default=default_currency, editable=False)
    balance = models.DecimalField(
        max_digits=money.MONEY_DIGITS, decimal_places=money.MONEY_PLACES, default=0,
        editable=False,
    )  # fmt: skip
    enabled = models.BooleanField(default=True, help_text="A disabled customer's keys refuse.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "panel_customers"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="customer_balance_gte_0"),
        ]
        permissions = [
            ("adjust_balance", "Can adjust customer balances"),
            ("manage_keys", "Can create and revoke customer API keys"),
        ]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A customer's API key: only its first characters (``prefix``, to find it) and a SHA-256
    digest of the whole key are kept; the key itself is shown once, when made."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    name = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "panel_api_keys"
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.prefix}… of {self.customer_id}{state}"


class BalanceEntry(models.Model):
    """One movement of a customer's balance: append-only (a trigger refuses UPDATE and DELETE).
    A charge is negative, a refund positive, an adjustment either; ``balance_after`` is the
    balance it left. At most one charge and one refund per order."""

    class Kind(models.TextChoices):
        CHARGE = "charge", "charge"
        REFUND = "refund", "refund"
        ADJUSTMENT = "adjustment", "adjustment"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(max_digits=money.MONEY_DIGITS, decimal_places=money.MONEY_PLACES)
    balance_after = models.DecimalField(
        max_digits=money.MONEY_DIGITS, decimal_places=money.MONEY_PLACES
    )
    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    # Who: "api:<key prefix>", "broker" (an order the broker ended), "admin:<username>",
    # "command"; an adjustment made in the admin also names its user.
    actor = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "panel_balance_ledger"
        ordering = ["-id"]
        verbose_name = "balance entry"
        verbose_name_plural = "balance ledger"
        indexes = [models.Index(fields=["customer", "-id"], name="ledger_customer")]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "kind"],
                condition=Q(kind__in=["charge", "refund"]),
                name="ledger_one_charge_one_refund",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="charge", amount__lte=0)
                    | Q(kind="refund", amount__gte=0)
                    | Q(kind="adjustment")
                ),
                name="ledger_sign_of_kind",
            ),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_after_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.customer_id})"
