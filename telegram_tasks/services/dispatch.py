"""Push mode: the dispatcher leases each provider's due push tasks, hands them to a transport
that POSTs each to that provider's URL, signed with that provider's key, and applies what came
back through the same completion path as ``/tasks/report``. The transport
(``telegram_tasks.api.push_transport``) is an interface like a view: it knows HTTP, signatures
and bodies; this service knows providers, leases, claims and the breakers.

What each answer does to its task:

    Delivered (200 + a report body)   tasks_report, exactly as if it came to /tasks/report
    Accepted (202, or 200 unreadable)  stays leased; the provider reports later (the webhook)
    Rejected (4xx but 429)             fails, reason push_http_<status>
    Unreachable (connection error, timeout, 429, 5xx)
                                       the transport's fault, not the task's: queued again
                                       after a backoff with jitter (Retry-After honoured),
                                       no attempt counted, same lease_id next time (the
                                       Idempotency-Key repeats), its lock kept armed
Each provider has a circuit breaker, which every dispatcher shares: it stops dispatching to
that provider while it keeps failing and lets one probe through when its open time is over;
the other providers' pushes go on. Several dispatchers (processes, machines) may run at once:
the lease statement's SKIP LOCKED gives each task to one of them, and within a pass each
provider is served in a thread of its own, so one slow fleet never delays the others.

Which key signs a provider's pushes (X-Provider-Signature): for the default provider,
PUSH_SIGNING_SECRET, else the first PROVIDER_TOKEN (as before providers were rows); otherwise
the SHA-256 hex digest of the provider's oldest live token — the provider computes it from the
token it holds, and the oldest one signs so that a rotation (add, switch, revoke) never signs
with a token the provider does not have yet.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction

from telegram_tasks import claims
from telegram_tasks.conf import app_settings, push_signing_secret
from telegram_tasks.failures import Reason, push_rejected
from telegram_tasks.logs import log_fields
from telegram_tasks.models import ExecutionMode, Provider, ProviderToken
from telegram_tasks.providers import ProviderRef
from telegram_tasks.services import settle, sql
from telegram_tasks.services.liveness import records_pass
from telegram_tasks.services.providers import push_urls
from telegram_tasks.services.pull import lease_tasks
from telegram_tasks.services.report import tasks_report
from telegram_tasks.services.report_items import ReportIn

logger = logging.getLogger(__name__)


def breaker_name(provider_id: int) -> str:
    """A provider's push circuit breaker (shared by every dispatcher)."""
    return f"push:{provider_id}"


@dataclass(frozen=True)
class PushTarget:
    """Where and how one provider's pushes go: its URL and the key that signs them (None: it
    has nothing to sign with, and gets no push)."""

    provider: ProviderRef
    url: str
    secret: str | None


@dataclass(frozen=True)
class Delivered:
    report: ReportIn


@dataclass(frozen=True)
class Accepted:
    why: str = "accepted"


@dataclass(frozen=True)
class Rejected:
    status: int


@dataclass(frozen=True)
class Unreachable:
    error: str
    retry_after: float | None = None
    # False: never sent (the pass ran out of time before its turn): nothing is said of the
    # provider, no dispatch error is counted, the task goes back to the queue at once.
    sent: bool = True


Outcome = Delivered | Accepted | Rejected | Unreachable
# The transport: a provider's target and its leased tasks (as /tasks/pull returns them) → one
# outcome each, in order.
Deliver = Callable[[PushTarget, Sequence[dict[str, Any]]], list[Outcome]]


@dataclass
class PushSummary:
    leased: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    circuits: dict[str, str] = field(default_factory=dict)  # provider name -> its circuit
    seconds: float = 0.0

    @property
    def circuit(self) -> str:
        """The circuit of the one provider served, or each provider's."""
        if len(self.circuits) == 1:
            return next(iter(self.circuits.values()))
        return ",".join(f"{k}:{v}" for k, v in sorted(self.circuits.items())) or "-"

    def add(self, part: PushSummary) -> None:
        self.leased += part.leased
        self.outcomes.update(part.outcomes)
        self.circuits.update(part.circuits)

    def line(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())) or "sent=0"
        return f"leased={self.leased} {counts} circuit={self.circuit} seconds={self.seconds:.3f}"


def push_url_problem(url: str) -> str | None:
    """Why pushes cannot go to this URL, or None: https://, or http:// with PUSH_ALLOW_HTTP."""
    if not url:
        return "no push URL is set"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "https" or (scheme == "http" and app_settings.PUSH_ALLOW_HTTP):
        return None
    return f"the push URL must be https:// (or set PUSH_ALLOW_HTTP): {url!r}"


def signing_secret(provider_id: int, *, is_default: bool) -> str | None:
    """The key that signs the provider's pushes (see the module's docstring), or None."""
    if is_default:
        secret = push_signing_secret()
        if secret:
            return secret
    return (
        ProviderToken.objects.filter(provider_id=provider_id, revoked_at__isnull=True)
        .order_by("created_at", "id")
        .values_list("digest", flat=True)
        .first()
    )


def push_targets() -> list[PushTarget]:
    """The enabled providers that take pushes, each with its URL and signing key."""
    urls = push_urls()
    rows = (
        Provider.objects.filter(pk__in=urls).order_by("pk").values_list("pk", "name", "is_default")
    )
    return [
        PushTarget(ProviderRef(pk, name), urls[pk], signing_secret(pk, is_default=is_default))
        for pk, name, is_default in rows
    ]


def target_problem(target: PushTarget) -> str | None:
    """Why this provider's pushes cannot be sent, or None."""
    problem = push_url_problem(target.url)
    if problem:
        return f"provider {target.provider.name}: {problem}"
    if not target.secret:
        return (
            f"provider {target.provider.name}: no live token to sign its pushes with "
            "(nor PUSH_SIGNING_SECRET / PROVIDER_TOKEN for the default provider)"
        )
    return None


@records_pass("push")
def tasks_push(
    *,
    now: datetime,
    deliver: Deliver,
    limit: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    targets: Sequence[PushTarget] | None = None,
) -> PushSummary:
    """One dispatch pass: for each provider that takes pushes (``targets``: all of them), at
    most ``limit`` (PUSH_BATCH) of its push tasks sent to its URL and their answers applied,
    each provider in a thread of its own. Results are applied at the moment they came back
    (``now`` plus the time the sends took, by ``clock``): that is when a success is counted."""
    started = clock()
    summary = PushSummary()
    ready = [t for t in (push_targets() if targets is None else targets) if not target_problem(t)]

    def one(target: PushTarget) -> PushSummary:
        return _dispatch(target, now=now, deliver=deliver, limit=limit, clock=clock)

    if len(ready) == 1:
        summary.add(one(ready[0]))
    elif ready:
        # Each in its own thread (and database connection, closed as it ends): a provider
        # that hangs holds its own sends only.
        def threaded(target: PushTarget) -> PushSummary:
            try:
                return one(target)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=len(ready)) as pool:
            for part in pool.map(threaded, ready):
                summary.add(part)
    summary.seconds = clock() - started
    logger.info("push pass: %s", summary.line(), extra=log_fields("push_pass", summary))
    return summary


def _dispatch(
    target: PushTarget,
    *,
    now: datetime,
    deliver: Deliver,
    limit: int | None,
    clock: Callable[[], float],
) -> PushSummary:
    """One provider's part of a pass: ask its breaker, lease its push tasks, send them, apply
    the answers, tell its breaker."""
    started = clock()
    provider = target.provider
    summary = PushSummary()
    name = breaker_name(provider.id)
    gate = claims.breaker(name, "allow", now=now)
    summary.circuits[provider.name] = gate.label
    if not gate.granted:
        return summary
    # Half-open: one probe tells whether the provider is back.
    most = 1 if gate.state == "half" else (limit or app_settings.PUSH_BATCH)
    leased = lease_tasks(limit=most, now=now, mode=ExecutionMode.PUSH, provider_id=provider.id)
    tasks = [json.loads(t.json) for t in leased]
    summary.leased = len(tasks)
    if not tasks:  # (half-open with nothing to send: a later pass probes)
        return summary
    outcomes = deliver(target, tasks)
    answered_at = now + timedelta(seconds=max(0.0, clock() - started))
    apply_outcomes(tasks, outcomes, now=answered_at, summary=summary, provider=provider)
    # Any 2xx or 4xx says the provider is up; a pass where most sends could not reach it
    # counts as one failure of its circuit.
    tried = [o for o in outcomes if not (isinstance(o, Unreachable) and not o.sent)]
    if tried:
        unreachable = sum(isinstance(o, Unreachable) for o in tried)
        op = "failure" if unreachable * 2 > len(tried) else "success"
        summary.circuits[provider.name] = claims.breaker(name, op, now=answered_at).label
    return summary


def apply_outcomes(
    tasks: Sequence[dict[str, Any]],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
    summary: PushSummary,
    provider: ProviderRef | None = None,
) -> None:
    reports: list[ReportIn] = []
    rejected: dict[int, list[dict[str, Any]]] = {}
    unreachable: list[tuple[dict[str, Any], Unreachable]] = []
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, Delivered):
            report = outcome.report
            if report.task_id != task["task_id"]:
                summary.outcomes["unreadable"] += 1
                continue  # an answer about another task: as good as no answer
            # The answer belongs to this hand-out, whatever the body says.
            reports.append(ReportIn(**{**report.__dict__, "lease_id": task["lease_id"]}))
        elif isinstance(outcome, Accepted):
            summary.outcomes[outcome.why] += 1
        elif isinstance(outcome, Rejected):
            rejected.setdefault(outcome.status, []).append(task)
        else:
            unreachable.append((task, outcome))
    answered = [t["task_id"] for t, o in zip(tasks, outcomes, strict=True)
                if not isinstance(o, Unreachable)]  # fmt: skip
    if answered:  # the provider is reachable for them again: their backoff starts over
        sql.fetch(
            f"UPDATE {sql.TASKS} SET dispatch_errors = 0 "  # noqa: S608
            "WHERE id = ANY(%s) AND dispatch_errors > 0",
            [answered],
        )
    for start in range(0, len(reports), app_settings.REPORT_MAX_BATCH):
        chunk = reports[start : start + app_settings.REPORT_MAX_BATCH]
        for out in tasks_report(reports=chunk, now=now, provider=provider):
            key = ("duplicate" if out.duplicate else out.status) if out.ok else "refused"
            summary.outcomes[key or "refused"] += 1
    for status, group in rejected.items():
        summary.outcomes["rejected"] += len(push_reject(group, status=status, now=now))
    if unreachable:
        summary.outcomes["retry"] += len(push_retry_later(unreachable, now=now))


def push_reject(tasks: Sequence[dict[str, Any]], *, status: int, now: datetime) -> list[dict]:
    """The provider refused these hand-outs (a 4xx but 429): they fail, naming the status."""
    with transaction.atomic():
        return settle.end_tasks(
            where=f"id = ANY(%(ids)s) AND status = {sql.LEASED} AND lease_id = ANY(%(leases)s)",
            params={
                "ids": [t["task_id"] for t in tasks],
                "leases": list({t["lease_id"] for t in tasks}),
            },
            reason=push_rejected(status),
            now=now,
        )


def backoff(errors: int, retry_after: float | None) -> float:
    """Seconds before the next dispatch of a task after ``errors`` transport failures in a row:
    exponential with full jitter (half to all of it), never sooner than the provider's
    Retry-After, at most PUSH_RETRY_MAX_SECONDS."""
    ceiling = min(
        app_settings.PUSH_RETRY_SECONDS * 2 ** max(errors - 1, 0),
        app_settings.PUSH_RETRY_MAX_SECONDS,
    )
    wait = random.uniform(ceiling / 2, ceiling)
    return max(wait, min(retry_after or 0, app_settings.PUSH_RETRY_MAX_SECONDS))


def push_retry_later(
    failed: Sequence[tuple[dict[str, Any], Unreachable]], *, now: datetime
) -> list[dict]:
    """The provider could not be reached for these hand-outs: back in the queue after a
    backoff, the same hand-out (lease_id kept, no attempt counted), their locks re-armed to
    cover the wait and the next lease, in the same transaction. A task whose order or account
    can no longer run it ends instead, and one that never reached the provider in
    PUSH_MAX_RETRIES sends fails (``push_unreachable``)."""
    grace = settle.grace()
    with transaction.atomic():
        rows = sql.fetch(
            f"SELECT {settle.CLAIM_COLUMNS}, dispatch_errors FROM {sql.TASKS} "  # noqa: S608
            f"WHERE id = ANY(%s) AND status = {sql.LEASED} ORDER BY id FOR UPDATE",
            [[t["task_id"] for t, _ in failed]],
        )
        rows, _ = settle.fail_blocked(rows, now=now)
        unsent = {t["task_id"] for t, outcome in failed if not outcome.sent}
        exhausted = [
            r
            for r in rows
            if r["id"] not in unsent and r["dispatch_errors"] + 1 >= app_settings.PUSH_MAX_RETRIES
        ]
        if exhausted:
            settle.after_commit_rollback(
                settle.fail_rows([r["id"] for r in exhausted], reason=Reason.PUSH_UNREACHABLE,
                                 now=now),
                now=now,
            )  # fmt: skip
        errors = {r["id"]: r["dispatch_errors"] for r in rows if r not in exhausted}
        plan = []
        for task, outcome in failed:
            if task["task_id"] not in errors:
                continue
            wait = backoff(errors[task["task_id"]] + 1, outcome.retry_after) if outcome.sent else 0
            at = now + timedelta(seconds=wait)
            plan.append(
                {
                    "id": task["task_id"],
                    "lease": task["lease_id"],
                    "at": at.isoformat(),
                    "until": (at + grace).isoformat(),
                    "err": outcome.error[:2000],
                    "inc": 1 if outcome.sent else 0,
                }
            )
        requeued = sql.fetch(
            f"""
            UPDATE {sql.TASKS} AS t
            SET status = {sql.QUEUED}, available_at = r.at, reserved_until = r.until,
                leased_until = NULL, redeliver = TRUE, dispatch_errors = t.dispatch_errors + r.inc,
                last_error = r.err, updated_at = %(now)s
            FROM jsonb_to_recordset(%(rows)s::jsonb)
                 AS r(id varchar, lease varchar, at timestamptz, until timestamptz, err text,
                      inc int)
            WHERE t.id = r.id AND t.status = {sql.LEASED} AND t.lease_id = r.lease
            RETURNING t.id, t.order_id, t.telegram_account_id, t.action, t.link_hash,
                      t.payload, t.reserved_until
            """,  # noqa: S608
            {"rows": json.dumps(plan), "now": now},
        )
        # Reservations stay armed while a task waits for dispatch, and past it for the lease it
        # will get.
        untils = [settle.queued_lock_until(r["reserved_until"]) for r in requeued]
        settle.rearm(requeued, until=untils, now=now)
    return requeued


def push_waiting() -> bool:
    """Whether any push task waits to be sent (one index lookup)."""
    return bool(
        sql.rows(
            f"SELECT 1 FROM {sql.TASKS} WHERE status = {sql.QUEUED} "  # noqa: S608
            f"AND execution_mode = {sql.literal(ExecutionMode.PUSH)} LIMIT 1"
        )
    )


def push_breaker(*, now: datetime, provider_id: int | None = None) -> claims.Breaker:
    """A provider's push circuit as it is now (the default provider's unless named)."""
    from telegram_tasks.models import default_provider_id

    pk = default_provider_id() if provider_id is None else provider_id
    return claims.breaker(breaker_name(pk), "peek", now=now)
