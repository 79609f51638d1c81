"""What the broker tells the order model's app, without importing it (the app connects).

``orders_ended``: the broker ended these orders' deliveries — an operator's cancel, or a stop
by the broker itself (the target is gone: ``services.orders_stop``). Sent with ``order_ids``
(the orders this call ended), ``reason`` (a ``failures.Reason``) and ``now``, inside the
transaction that failed their unfinished tasks: when a receiver runs, no unit of these orders
is in flight any more, so each order's ``remains`` is final, and whatever the receiver writes
commits or rolls back with the tasks' end. A receiver that raises rolls that transaction back
(the orders stay ended; their tasks end later by housekeeping, and the app must then settle
them on its own: see docs/architecture.md).

Nothing is sent per report: what a report tells the order app travels in the order model's
optional columns instead (``start_count``, filled by the report's own statement; see
``services.sql.OrderTable``)."""

from __future__ import annotations

from django.dispatch import Signal

orders_ended = Signal()
