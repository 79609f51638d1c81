"""Account selection: round-robin from a per-action cursor, many tasks at a time.

Candidates are read from PostgreSQL in pages of active accounts of enabled providers ordered by
id, starting after the action's cursor (kept in Redis) and wrapping around once. A demand may
be limited to some providers (its order's routing): other providers' accounts are passed over
for it, as candidates refused for its target are. Each round pairs every unserved demand
with the next free candidate and sends all those RESERVEs in one pipeline, so the round trips
grow with the rounds and pages, not with the candidates tried. A candidate refused for an
account-wide reason (locked, cooldown, cap, hold) is dropped for every demand; one refused for a
target (gate, dedupe) stays available to the other demands. A RESERVE only succeeds for the one
demand it was sent for, so no reservation is ever left that no demand holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from telegram_tasks.claims import keys
from telegram_tasks.claims.operations import Claim, Refusal, Target, check_many, reserve_many
from telegram_tasks.claims.scripts import connection
from telegram_tasks.conf import app_settings
from telegram_tasks.models import TelegramAccount

MIN_PAGE = 200
PROBE = 64  # candidates checked per demand and round when demands are few
FEW_DEMANDS = 16  # with more, one RESERVE per demand and round already fills a pipeline


class AccountRef(NamedTuple):
    id: int
    provider_account_id: str | None
    phone: str
    tier: str
    provider_id: int = 0


@dataclass(frozen=True, slots=True)
class Demand:
    """One task that needs an account: its target, its token (task id), its lock deadline, and
    the providers whose accounts may take it (None: any)."""

    target: Target
    token: str
    until: datetime | None = None
    providers: frozenset[int] | None = None


@dataclass(slots=True)
class Selection:
    """What selection found for one demand: an account, or none with the tally of refusals.
    ``skipped``: the selection stopped (``most`` demands served) before this demand was
    served or refused by every candidate."""

    account: AccountRef | None = None
    tally: Counter[str] = field(default_factory=Counter)
    tried: int = 0
    skipped: bool = False

    @property
    def starved(self) -> bool:
        """Refused by every candidate it tried (not merely skipped)."""
        return self.account is None and not self.skipped


class Selections(list):
    """One Selection per demand, in order; ``scanned_all`` says every active account was
    considered (so a starved demand was refused by all of them, not cut off by the budget)."""

    scanned_all: bool = False
    visits: int = 0  # candidates looked at while pairing demands (the pairing's own work)


def _pages(after: int, size: int) -> Iterator[list[AccountRef]]:
    """Active accounts of enabled providers with id > after, then from the start up to after:
    each once."""
    active = TelegramAccount.objects.filter(is_active=True, provider__enabled=True).order_by("id")
    for lower, upper in ((after, None), (0, after)):
        last = lower
        while True:
            qs = active.filter(id__gt=last)
            if upper is not None:
                qs = qs.filter(id__lte=upper)
            rows = list(
                qs.values_list("id", "provider_account_id", "phone", "tier", "provider_id")[:size]
            )
            if not rows:
                break
            yield list(map(AccountRef._make, rows))
            last = rows[-1][0]
            if len(rows) < size:
                break


def select_accounts(
    *,
    action: str,
    demands: Sequence[Demand],
    now: datetime,
    budget: int | None = None,
    most: int | None = None,
) -> Selections:
    """RESERVE one account per demand, serving demands in the order given; a demand no account
    takes comes back starved, with the tally of refusals. ``budget`` (default
    ACCOUNT_SCAN_BUDGET) caps RESERVEs tried per demand; ``most`` caps the demands served (the
    rest come back ``skipped``). A candidate refused for a target (gate, dedupe) is refused
    for every demand of that target: it is learned once, not once per task."""
    budget = budget or app_settings.ACCOUNT_SCAN_BUDGET
    most = len(demands) if most is None else most
    default_until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    results = Selections(Selection() for _ in demands)
    if not demands:
        return results
    redis = connection()
    cursor_key = keys.cursor(action)
    cursor = int(redis.get(cursor_key) or 0)

    candidates: list[AccountRef] = []
    usable: list[bool] = []  # False once taken by a demand or refused account-wide
    # Target refusals, shared by the demands of one target (the slots of one order, and the
    # orders that aim at the same link and post).
    by_target: dict[Target, set[int]] = {}
    refused_for: list[set[int]] = [by_target.setdefault(d.target, set()) for d in demands]
    routed = [d.providers for d in demands]  # per demand: the providers allowed (None: any)
    served_count = 0
    first_usable = 0
    last_taken: AccountRef | None = None  # the furthest account taken, in scan order
    scanned = 0  # candidates dropped from the front (see below)
    last_position = -1
    waiting = list(range(len(demands)))
    probe = [2] * len(demands)  # candidates a demand checks next time it probes
    pages = _pages(cursor, max(MIN_PAGE, 2 * len(demands)))
    exhausted = False

    while waiting and served_count < most:
        # Pair each waiting demand with the next usable candidate no other demand has this round.
        while first_usable < len(candidates) and not usable[first_usable]:
            first_usable += 1
        if first_usable > MIN_PAGE:
            # Candidates before the first usable one are done with: drop them, so memory holds
            # the pages in play, never every account.
            del candidates[:first_usable], usable[:first_usable]
            scanned += first_usable
            first_usable = 0
        # Few demands for many candidates (one task's selection, a thin pass): probe several
        # candidates per demand with a read-only check in one pipeline first, so round trips
        # follow the pages scanned, not the candidates tried.
        free = len(candidates) - first_usable
        few = len(waiting) <= FEW_DEMANDS and free >= 2 * len(waiting)
        per = 1
        picked: set[int] = set()
        offered: list[tuple[int, list[int]]] = []
        short: list[int] = []
        scan = first_usable
        for d in waiting:
            if len(offered) >= most - served_count:
                # No more RESERVEs this round than demands can still be served (see below):
                # pairing the rest would only walk the candidates for nothing, once per
                # demand — a pass with a small budget and many slots would go quadratic.
                break
            mine: list[int] = []
            i = scan
            # A demand probes 2, then 4, 8 … candidates a round while none of them is eligible.
            room = min(probe[d] if few else 1, budget - results[d].tried)
            per = max(per, room)
            while i < len(candidates) and len(mine) < room:
                results.visits += 1
                if (
                    usable[i]
                    and i not in picked
                    and candidates[i].id not in refused_for[d]
                    and (routed[d] is None or candidates[i].provider_id in routed[d])
                ):
                    mine.append(i)
                    picked.add(i)
                i += 1
            if not mine:
                short.append(d)
                continue
            offered.append((d, mine))
            # The next demand starts past what this round took and what is used up.
            while scan < len(candidates) and (scan in picked or not usable[scan]):
                scan += 1
        if short and not exhausted:
            page = next(pages, None)
            if page is None:
                exhausted = True
            else:
                candidates.extend(page)
                usable.extend([True] * len(page))
        if not offered:
            if exhausted:
                break
            continue
        pairs: list[tuple[int, int]] = []
        if per > 1:
            probes = [(d, i) for d, mine in offered for i in mine]
            answers = check_many(
                [Claim(candidates[i].id, action, demands[d].target, demands[d].token,
                       candidates[i].tier)
                 for d, i in probes],
                now=now,
            )  # fmt: skip
            chosen: set[int] = set()
            for d, _ in offered:
                probe[d] = min(PROBE, probe[d] * 2)
            for (d, i), refusal in zip(probes, answers, strict=True):
                results[d].tried += 1
                if refusal is not None:
                    _refused(results[d], refusal, i, d, usable, refused_for, candidates)
                elif d not in chosen:
                    chosen.add(d)
                    pairs.append((d, i))
            if not pairs:
                waiting = [d for d in waiting if results[d].tried < budget]
                continue
        else:
            pairs = [(d, mine[0]) for d, mine in offered]
        # No more RESERVEs than demands can still be served, the earlier demands first: when
        # accounts run short, the order the caller gave (a pass's fair order) decides.
        pairs = pairs[: most - served_count]
        if per == 1:
            for d, _ in pairs:
                results[d].tried += 1

        claims = [
            Claim(candidates[i].id, action, demands[d].target, demands[d].token, candidates[i].tier)
            for d, i in pairs
        ]
        untils = [demands[d].until or default_until for d, _ in pairs]
        outcomes = reserve_many(claims, now=now, until=untils)
        served: set[int] = set()
        for (d, i), refusal in zip(pairs, outcomes, strict=True):
            if refusal is None:
                results[d].account = candidates[i]
                usable[i] = False
                served.add(d)
                position = scanned + i
                if last_taken is None or position > last_position:
                    last_taken, last_position = candidates[i], position
            else:
                _refused(results[d], refusal, i, d, usable, refused_for, candidates)
        served_count += len(served)
        waiting = [d for d in waiting if d not in served and results[d].tried < budget]

    for d in waiting:
        if results[d].account is None and served_count >= most:
            results[d].skipped = True
    results.scanned_all = exhausted
    if last_taken is not None:
        # Round-robin: the next selection for this action starts after the last account taken.
        redis.set(cursor_key, last_taken.id)
    return results


def _refused(
    result: Selection,
    refusal: Refusal,
    i: int,
    d: int,
    usable: list[bool],
    refused_for: list[set[int]],
    candidates: list[AccountRef],
) -> None:
    result.tally[refusal.value] += 1
    if refusal.account_wide:
        usable[i] = False  # out for every demand of this action
    else:
        refused_for[d].add(candidates[i].id)  # out for this target only


def select_account(
    *, action: str, target: Target, token: str, now: datetime, until: datetime | None = None
) -> Selection:
    """RESERVE one account for one task (see ``select_accounts``)."""
    return select_accounts(action=action, demands=[Demand(target, token, until)], now=now)[0]
