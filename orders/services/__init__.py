"""The services of the orders app (the panel side): every write of customers, keys, balances,
panel orders, their ends and refills. Interfaces (the panel API, commands, the admin, Celery)
import from here.

    customers   customers, API keys, operator adjustments, the books' check
    ledger      the balance ledger's statements (conditional balance updates + rows)
    placing     an add: checked, charged in the transaction that creates the order
    ending      a customer's cancel; every ended order settled (its refund), once
    refills     drops delivered again as a free child order
"""

from orders.services.customers import (
    NewKey,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    balance_adjust,
    balances_verify,
    customer_create,
)
from orders.services.ending import (
    CancelOut,
    orders_cancel_for,
    orders_settle,
    orders_settle_due,
    settle_ended,
)
from orders.services.placing import AddRequest, dripfeed_spacing, order_add
from orders.services.refills import RefillOut, order_drops, refill_create

__all__ = [
    "AddRequest",
    "CancelOut",
    "NewKey",
    "RefillOut",
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "balance_adjust",
    "balances_verify",
    "customer_create",
    "dripfeed_spacing",
    "order_add",
    "order_drops",
    "orders_cancel_for",
    "orders_settle",
    "orders_settle_due",
    "refill_create",
    "settle_ended",
]
