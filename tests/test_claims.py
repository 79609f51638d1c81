"""The Lua scripts against real Redis, with time passed as ``now``."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from telegram_tasks import claims
from telegram_tasks.claims import Claim, ExtendResult, Refusal, Target, keys
from telegram_tasks.claims.operations import next_local_midnight
from tests.concurrency import run_concurrently

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LINK = Target("a" * 64)
POST = Target("b" * 64, 42)


def claim(token="t1", action="subscribe", account=1, target=LINK):
    return Claim(account, action, target, token)


@pytest.fixture
def fast_policies(settings):
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {
            "subscribe": {"cooldown": 60, "daily_cap": 2},
            "view": {"cooldown": 5, "daily_cap": 3},
        },
    }


def test_reserve_takes_the_lock_and_consumes_nothing(redis_client):
    assert claims.reserve(claim(), now=T0) is None
    assert redis_client.hget(keys.lock(1, "subscribe"), "token") == b"t1"
    assert not redis_client.exists(keys.cooldown(1, "subscribe"))
    assert not redis_client.exists(keys.cap(1, "subscribe", T0))
    assert not redis_client.exists(keys.state(1, LINK.link_hash))


def test_locked(redis_client):
    assert claims.reserve(claim("t1"), now=T0) is None
    assert claims.reserve(claim("t2"), now=T0) == Refusal.LOCKED
    # Another action of the same account is a different lock.
    assert claims.reserve(claim("t3", action="view"), now=T0) is None


def test_same_token_reserve_is_idempotent_and_raises_the_deadline(redis_client):
    assert claims.reserve(claim("t1"), now=T0, until=T0 + timedelta(seconds=10)) is None
    assert claims.reserve(claim("t1"), now=T0, until=T0 + timedelta(seconds=50)) is None
    assert claims.reserve(claim("t2"), now=T0 + timedelta(seconds=20)) == Refusal.LOCKED


def test_lapsed_lock_is_free_again():
    assert claims.reserve(claim("t1"), now=T0, until=T0 + timedelta(seconds=30)) is None
    assert claims.reserve(claim("t2"), now=T0 + timedelta(seconds=29)) == Refusal.LOCKED
    assert claims.reserve(claim("t2"), now=T0 + timedelta(seconds=30)) is None


def test_cooldown_after_commit_and_its_expiry(fast_policies):
    claims.reserve(claim("t1"), now=T0)
    assert claims.commit(claim("t1"), now=T0) is True
    other_link = claim("t2", target=Target("c" * 64))
    assert claims.reserve(other_link, now=T0 + timedelta(seconds=59)) == Refusal.COOLDOWN
    assert claims.reserve(other_link, now=T0 + timedelta(seconds=60)) is None


def test_cap_counts_successes_per_local_day(fast_policies):
    now = T0
    for i in range(3):
        c = claim(f"v{i}", action="view", target=Target(f"{i}" * 64))
        assert claims.reserve(c, now=now) is None
        claims.commit(c, now=now)
        now += timedelta(seconds=5)
    fourth = claim("v9", action="view", target=Target("9" * 64))
    assert claims.reserve(fourth, now=now) == Refusal.CAP
    assert claims.reserve(fourth, now=now + timedelta(days=1)) is None


def test_cap_rolls_over_at_local_midnight_not_utc(fast_policies, settings, redis_client):
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9: local midnight is 15:00 UTC
    evening = datetime(2026, 3, 10, 14, 50, tzinfo=UTC)  # 23:50 in Tokyo
    for i in range(3):
        c = claim(f"v{i}", action="view", target=Target(f"{i}" * 64))
        claims.reserve(c, now=evening + timedelta(seconds=10 * i))
        claims.commit(c, now=evening + timedelta(seconds=10 * i))
    late = claim("v8", action="view", target=Target("8" * 64))
    assert claims.reserve(late, now=datetime(2026, 3, 10, 14, 59, 59, tzinfo=UTC)) == Refusal.CAP
    assert claims.reserve(late, now=datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)) is None
    cap_key = keys.cap(1, "view", evening.astimezone(ZoneInfo("Asia/Tokyo")))
    ttl = redis_client.pttl(cap_key)
    # Real TTL: past the next local midnight (10 min away in the test's clock) by about an hour.
    assert 0 < ttl <= (10 * 60 + 3600) * 1000


def test_next_local_midnight_on_dst_days(settings):
    settings.TIME_ZONE = "Europe/Amsterdam"
    # 2026-03-29: clocks go 02:00 -> 03:00, a 23-hour day.
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 local on the 29th
    assert next_local_midnight(start) - start == timedelta(hours=23)
    # 2026-10-25: clocks go 03:00 -> 02:00, a 25-hour day.
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 local on the 25th
    assert next_local_midnight(start) - start == timedelta(hours=25)


def test_gate_transitions_subscribe_unsubscribe_subscribe(settings):
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"subscribe": {"cooldown": 0}, "unsubscribe": {"cooldown": 0}},
    }
    assert claims.reserve(claim("u0", action="unsubscribe"), now=T0) == Refusal.GATE
    assert claims.reserve(claim("s1"), now=T0) is None
    claims.commit(claim("s1"), now=T0)
    assert claims.reserve(claim("s2"), now=T0) == Refusal.GATE
    assert claims.reserve(claim("u1", action="unsubscribe"), now=T0) is None
    claims.commit(claim("u1", action="unsubscribe"), now=T0)
    assert claims.reserve(claim("u2", action="unsubscribe"), now=T0) == Refusal.GATE
    assert claims.reserve(claim("s3"), now=T0) is None
    # The state is per link: another channel is still open.
    assert claims.reserve(claim("s4", account=2, target=Target("f" * 64)), now=T0) is None


def test_one_shot_dedupe_is_per_link_and_post():
    view = claim("v1", action="view", target=POST)
    assert claims.reserve(view, now=T0) is None
    claims.commit(view, now=T0)
    later = T0 + timedelta(hours=1)
    assert claims.reserve(claim("v2", action="view", target=POST), now=later) == Refusal.DEDUPE
    other_post = Target(POST.link_hash, 43)
    assert claims.reserve(claim("v3", action="view", target=other_post), now=later) is None


def test_hold_refuses_every_action_until_it_ends():
    deadline = claims.hold(1, now=T0, seconds=30)
    assert deadline == T0 + timedelta(seconds=30)
    assert claims.reserve(claim("t1"), now=T0 + timedelta(seconds=29)) == Refusal.HOLD
    assert claims.reserve(claim("t2", action="view"), now=T0) == Refusal.HOLD
    # A shorter hold never shortens a longer one.
    assert claims.hold(1, now=T0, seconds=5) == T0 + timedelta(seconds=30)
    assert claims.reserve(claim("t1"), now=T0 + timedelta(seconds=30)) is None


def test_commit_consumes_and_rollback_does_not(redis_client, fast_policies):
    claims.reserve(claim("t1"), now=T0)
    assert claims.rollback(claim("t1")) is True
    assert not redis_client.exists(keys.lock(1, "subscribe"))
    assert not redis_client.exists(keys.cooldown(1, "subscribe"))
    assert not redis_client.exists(keys.cap(1, "subscribe", T0))
    assert not redis_client.exists(keys.state(1, LINK.link_hash))
    assert claims.reserve(claim("t2"), now=T0) is None
    assert claims.commit(claim("t2"), now=T0) is True
    assert not redis_client.exists(keys.lock(1, "subscribe"))
    assert redis_client.exists(keys.cooldown(1, "subscribe"))
    assert int(redis_client.get(keys.cap(1, "subscribe", T0))) == 1
    assert redis_client.get(keys.state(1, LINK.link_hash)).startswith(b"subscribed@")


def test_double_commit_is_a_no_op(redis_client, fast_policies):
    claims.reserve(claim("t1", action="view", target=POST), now=T0)
    assert claims.commit(claim("t1", action="view", target=POST), now=T0) is True
    cd_before = redis_client.get(keys.cooldown(1, "view"))
    later = T0 + timedelta(seconds=3)
    assert claims.commit(claim("t1", action="view", target=POST), now=later) is False
    assert int(redis_client.get(keys.cap(1, "view", T0))) == 1
    assert redis_client.get(keys.cooldown(1, "view")) == cd_before


def test_foreign_token_never_releases_a_lock(redis_client):
    claims.reserve(claim("owner"), now=T0)
    assert claims.rollback(claim("intruder")) is False
    claims.commit(claim("intruder"), now=T0)  # a late success of an older task
    assert redis_client.hget(keys.lock(1, "subscribe"), "token") == b"owner"
    assert claims.reserve(claim("third"), now=T0) == Refusal.LOCKED


def test_extend_rearms_only_the_holder():
    claims.reserve(claim("t1"), now=T0, until=T0 + timedelta(seconds=10))
    assert (
        claims.extend(claim("t1"), now=T0, until=T0 + timedelta(seconds=100))
        == ExtendResult.REARMED
    )
    assert claims.reserve(claim("t2"), now=T0 + timedelta(seconds=50)) == Refusal.LOCKED
    assert (
        claims.extend(claim("t2"), now=T0, until=T0 + timedelta(seconds=500)) == ExtendResult.TAKEN
    )
    late = T0 + timedelta(seconds=101)
    assert (
        claims.extend(claim("t1"), now=late, until=late + timedelta(seconds=10))
        == ExtendResult.LOST
    )


def test_scripts_reload_after_noscript(redis_client):
    redis_client.script_flush()
    assert claims.reserve(claim("t1"), now=T0) is None
    redis_client.script_flush()
    assert claims.hold(1, now=T0, seconds=1) == T0 + timedelta(seconds=1)  # another script


def test_every_key_of_one_account_shares_a_hash_slot():
    from redis.crc import key_slot

    names = [
        keys.lock(7, "view"), keys.cooldown(7, "view"), keys.cap(7, "view", T0),
        keys.state(7, "a" * 64), keys.dedupe(7, "view", "a" * 64, 1), keys.hold(7), keys.done(7, "x"),
    ]  # fmt: skip
    assert len({key_slot(k.encode()) for k in names}) == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_reserving_one_account_exactly_one_wins():
    outcomes = run_concurrently(lambda i: claims.reserve(claim(f"t{i}"), now=T0), 20)
    assert outcomes.count(None) == 1
    assert outcomes.count(Refusal.LOCKED) == 19


def test_check_answers_like_reserve_and_writes_nothing(redis_client):
    from telegram_tasks.claims.operations import check_many

    assert check_many([claim("t1")], now=T0) == [None]
    assert not redis_client.exists(keys.lock(1, "subscribe"))
    claims.reserve(claim("t1"), now=T0)
    assert check_many([claim("t2"), claim("t1")], now=T0) == [Refusal.LOCKED, None]
    assert redis_client.hget(keys.lock(1, "subscribe"), "token") == b"t1"


def forget_everything(redis_client, prefix):
    """Redis restarted empty (this test's keys only): the marker is gone with the rest."""
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


def test_reserve_refuses_a_redis_that_lost_its_state(redis_client, redis_prefix):
    """RESERVE checks the marker itself: against empty keys it would grant a second one-shot,
    a subscribe while subscribed, a cap overshot. Nothing is written, nothing is judged."""
    from telegram_tasks.claims.operations import check_many

    claims.reserve(claim("t1", "view", target=POST), now=T0)
    claims.commit(claim("t1", "view", target=POST), now=T0)
    forget_everything(redis_client, redis_prefix)
    later = T0 + timedelta(minutes=5)
    with pytest.raises(claims.ClaimsStateLost):
        claims.reserve(claim("t2", "view", target=POST), now=later)
    with pytest.raises(claims.ClaimsStateLost):
        check_many([claim("t2", "view", target=POST)], now=later)
    assert not redis_client.exists(keys.lock(1, "view"))
    # Once the state is back, the dedupe refuses as it should.
    claims.mark_state("rebuilt")
    claims.reserve(claim("t1", "view", target=POST), now=T0)
    claims.commit(claim("t1", "view", target=POST), now=T0)
    assert claims.reserve(claim("t2", "view", target=POST), now=later) is Refusal.DEDUPE


def test_a_batch_that_meets_a_lost_state_keeps_no_reservation(redis_client, redis_prefix):
    """Some RESERVEs of a pipeline were granted before the marker went: they are given back."""
    from telegram_tasks.claims import keys as k

    # Two accounts; the marker the second one's script checks is gone (on a cluster, only the
    # marker of its slot: the node that owns it restarted empty).
    assert k.account_slot(1) != k.account_slot(2)
    redis_client.delete(k.state_marker(2, cluster=_cluster()))
    with pytest.raises(claims.ClaimsStateLost):
        claims.reserve_many([claim("a", account=1), claim("b", account=2)], now=T0)
    assert not redis_client.exists(keys.lock(1, "subscribe"))
    assert not redis_client.exists(keys.lock(2, "subscribe"))
    assert not claims.state_present()


def _cluster():
    from django.conf import settings

    return settings.REDIS_IS_CLUSTER


def test_verify_judges_a_live_reservation_as_if_it_were_new(redis_client):
    from telegram_tasks.claims import keys as k

    claims.reserve(claim("t1", "view", target=POST), now=T0)
    assert claims.verify_reservations([claim("t1", "view", target=POST)], now=T0) == [None]
    # A lost write comes back (the one-shot was already done): the live task would be refused.
    redis_client.set(k.dedupe(1, "view", POST.link_hash, POST.post_id), "1")
    assert claims.verify_reservations([claim("t1", "view", target=POST)], now=T0) == [
        Refusal.DEDUPE
    ]
    assert claims.verify_reservations([claim("t2", "view", target=POST)], now=T0) == [
        Refusal.LOCKED
    ]
    assert redis_client.hget(k.lock(1, "view"), "token") == b"t1"  # nothing written
