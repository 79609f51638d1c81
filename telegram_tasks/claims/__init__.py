"""Two-phase claims on Telegram accounts, kept in Redis and changed only by atomic Lua scripts.

RESERVE (at generation) takes the (action, account) lock for a task and consumes nothing;
COMMIT (on success) consumes cooldown and today's cap, sets link state or the one-shot dedupe key
and releases the lock, once per task; ROLLBACK (on failure or expiry) releases the lock only.
EXTEND re-arms the lock of a task that is still alive; HOLD keeps an account off every action.

Key scheme (``P`` = ``TELEGRAM_TASKS["KEY_PREFIX"]``, default ``tg``; ``{aID}`` is the Redis
Cluster hash tag, so every key of one account lives in one slot and each script touches one
slot):

    P:{aID}:lock:ACTION                  hash {token, until}  the RESERVE lock of one live task
    P:{aID}:cd:ACTION                    cooldown deadline (ms since epoch)
    P:{aID}:cap:ACTION:YYYYMMDD          successes on that local day (TIME_ZONE); expires an hour
                                         after the next local midnight
    P:{aID}:state:LINKHASH               "subscribed@MS" | "unsubscribed@MS" (gated actions, 90
                                         days; MS: when, so a restore never undoes a newer one)
    P:{aID}:dedupe:ACTION:LINKHASH:POST  one-shot success marker (90 days)
    P:{aID}:hold                         account-wide hold deadline (flood wait)
    P:{aID}:done:TASKID                  COMMIT marker that makes COMMIT idempotent (7 days)
    P:{aID}:full                         CHANNELS_TOO_MUCH: no subscribe until an unsubscribe
    P:{aID}:acd                          account-wide cooldown deadline (tier account_cooldown)
    P:{aID}:acap:YYYYMMDD                the account's successes that local day, all actions
    P:{aID}:channels                     channels the account is in (open memberships)
    P:marker                             the state is present (set by rebuild_claims)
    P:{SLOTTAG}:marker                   (a cluster) the state of that slot's node is present:
                                         RESERVE and COMMIT check the one of their account's
                                         slot (SLOTTAG: a tag that hashes to the slot)
    P:farm:cooling:PROVIDER              a provider's accounts cooling down, scored by their
                                         cooldown's end (ms)
    P:farm:capped:PROVIDER:YYYYMMDD      a provider's accounts capped that local day (a set)
    P:farm:mark:YYYYMMDD                 up to when that day's successes were read into the two
    P:heartbeat                          when housekeeping last wrote (ms); an older one than the
                                         ledger's checkpoint means Redis lost writes
    P:cursor:ACTION                      round-robin cursor of account selection (not per account)
    P:celery-lock:NAME                   held while a periodic pass runs (no overlap)
    P:breaker:push:PROVIDERID            a provider's push circuit breaker (every dispatcher's)
    P:pull:PROVIDERID:REQUESTID          what that provider's pull with that request_id leased
                                         (replay, 5 min)

Deadlines are stored as values and compared with the caller's ``now``, so time is a parameter;
key TTLs only collect garbage. Python callers never see keys or Lua: they use the functions
below.
"""

from telegram_tasks.claims.coordination import (
    REPLAY_IN_PROGRESS,
    Breaker,
    breaker,
    farm_marks_forget,
    farm_marks_read,
    farm_marks_since,
    farm_marks_update,
    pass_lock,
    pull_replay_begin,
    pull_replay_forget,
    pull_replay_store,
    snapshot_load,
    snapshot_store,
)
from telegram_tasks.claims.inspection import AccountState, ActionState, account_states
from telegram_tasks.claims.operations import (
    Claim,
    ExtendResult,
    Refusal,
    Target,
    commit,
    commit_many,
    commit_many_at,
    committed_many,
    extend,
    extend_many,
    hold,
    hold_many,
    leave_many,
    lock_holders,
    mark_full,
    next_local_midnight,
    ping,
    reserve,
    reserve_many,
    rollback,
    rollback_many,
    unhold_many,
    verify_reservations,
)
from telegram_tasks.claims.scripts import ClaimsStateLost
from telegram_tasks.claims.selection import (
    AccountRef,
    Demand,
    Selection,
    select_account,
    select_accounts,
)
from telegram_tasks.claims.state import (
    Restore,
    ensure_state,
    heartbeat,
    mark_state,
    node_identities,
    rebuild_accounts,
    set_heartbeat,
    state_present,
)

__all__ = [
    "REPLAY_IN_PROGRESS",
    "AccountRef",
    "AccountState",
    "ActionState",
    "Breaker",
    "Claim",
    "ClaimsStateLost",
    "Demand",
    "ExtendResult",
    "Refusal",
    "Restore",
    "Selection",
    "Target",
    "account_states",
    "breaker",
    "commit",
    "commit_many",
    "commit_many_at",
    "committed_many",
    "ensure_state",
    "extend",
    "extend_many",
    "farm_marks_forget",
    "farm_marks_read",
    "farm_marks_since",
    "farm_marks_update",
    "heartbeat",
    "hold",
    "hold_many",
    "leave_many",
    "lock_holders",
    "mark_full",
    "mark_state",
    "next_local_midnight",
    "node_identities",
    "pass_lock",
    "ping",
    "pull_replay_begin",
    "pull_replay_forget",
    "pull_replay_store",
    "rebuild_accounts",
    "reserve",
    "reserve_many",
    "rollback",
    "rollback_many",
    "select_account",
    "select_accounts",
    "set_heartbeat",
    "snapshot_load",
    "snapshot_store",
    "state_present",
    "unhold_many",
    "verify_reservations",
]
