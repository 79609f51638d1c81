"""Tasks become available: what queues pull tasks (generation, a retry or a release putting a
task back, an operator's requeue) says so with ``announce`` in its transaction, a PostgreSQL
NOTIFY that every listening web process receives when (and only if) that transaction commits.
The listening side, which wakes the pulls waiting for them, is the API's
(``telegram_tasks.api.waiting``): the services announce and never wait.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from telegram_tasks.models import ExecutionMode

CHANNEL = "telegram_tasks_available"
# Accounts named in one announcement at most (NOTIFY payloads stay far below their 8 kB).
NAMED_ACCOUNTS = 100


def announce(tasks: Iterable[tuple[datetime, int, str | None, str]]) -> None:
    """Tell waiting pulls about tasks now queued — (available_at, provider_id,
    provider_account_id, execution_mode) each; only pull tasks count: how many become available
    when (to the next whole second: a drip-feed order's later slots each wake pulls at their own
    time), for which provider, of which of its accounts (if not too many to name). A NOTIFY in
    the caller's transaction: delivered on its commit, never if it rolls back."""
    pulled = [
        (at, provider, account)
        for at, provider, account, mode in tasks
        if mode == ExecutionMode.PULL
    ]
    if not pulled:
        return
    named = {(provider, account or "") for _, provider, account in pulled}
    name = len(named) <= NAMED_ACCOUNTS
    groups: dict[tuple[int, int], tuple[int, set[str]]] = {}
    for at, provider, account in pulled:
        key = (math.ceil(at.timestamp()), provider)
        count, accounts = groups.get(key, (0, set()))
        if name:
            accounts.add(account or "")
        groups[key] = (count + 1, accounts)
    payload = json.dumps(
        {
            "g": [
                [second, count, sorted(accounts) if name else None, provider]
                for (second, provider), (count, accounts) in sorted(groups.items())
            ]
        },
        separators=(",", ":"),
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
