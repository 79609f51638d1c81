"""Account-wide limits of tiers in RESERVE and COMMIT, against real Redis, time as ``now``."""

from datetime import UTC, datetime, timedelta

import pytest

from telegram_tasks import claims
from telegram_tasks.claims import Claim, Refusal, Target, keys
from tests.concurrency import run_concurrently

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def tiers(settings):
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {
            "subscribe": {"cooldown": 0, "daily_cap": None},
            "view": {"cooldown": 0, "daily_cap": None},
            "reaction": {"cooldown": 0, "daily_cap": None},
        },
        "TIERS": {
            "slow": {"account_cooldown": 30},
            "capped": {"account_daily_cap": 3},
            "small": {"max_channels": 2},
        },
    }


def c(account, action, token, tier, link="a", post=None):
    return Claim(account, action, Target(link * 64, post), token, tier)


def test_an_account_cooldown_spans_every_action(tiers):
    assert claims.reserve(c(1, "view", "v1", "slow", post=1), now=T0) is None
    # Another action may not run beside it: its success could come sooner than the cooldown.
    assert (
        claims.reserve(c(1, "reaction", "r1", "slow", post=1), now=T0) is Refusal.ACCOUNT_COOLDOWN
    )
    claims.commit(c(1, "view", "v1", "slow", post=1), now=T0)
    later = T0 + timedelta(seconds=29)
    assert (
        claims.reserve(c(1, "reaction", "r1", "slow", post=1), now=later)
        is Refusal.ACCOUNT_COOLDOWN
    )
    assert (
        claims.reserve(c(1, "reaction", "r1", "slow", post=1), now=T0 + timedelta(seconds=30))
        is None
    )


def test_an_account_daily_cap_counts_live_reservations(tiers):
    assert claims.reserve(c(2, "view", "v", "capped", post=1), now=T0) is None
    assert claims.reserve(c(2, "reaction", "r", "capped", post=1), now=T0) is None
    assert claims.reserve(c(2, "subscribe", "s", "capped"), now=T0) is None
    # Three successes may come: a fourth live task would break the cap.
    claims.commit(c(2, "view", "v", "capped", post=1), now=T0)
    assert claims.reserve(c(2, "view", "v2", "capped", post=2), now=T0) is Refusal.ACCOUNT_CAP
    claims.rollback(c(2, "reaction", "r", "capped", post=1))
    assert claims.reserve(c(2, "view", "v2", "capped", post=2), now=T0) is None


def test_max_channels_counts_memberships_and_frees_on_unsubscribe(tiers, redis_client):
    for token, link in (("s1", "a"), ("s2", "b")):
        assert claims.reserve(c(3, "subscribe", token, "small", link=link), now=T0) is None
        claims.commit(c(3, "subscribe", token, "small", link=link), now=T0)
    assert int(redis_client.get(keys.channels(3))) == 2
    assert claims.reserve(c(3, "subscribe", "s3", "small", link="d"), now=T0) is Refusal.CHANNELS
    assert claims.reserve(c(3, "unsubscribe", "u1", "small", link="a"), now=T0) is None
    claims.commit(c(3, "unsubscribe", "u1", "small", link="a"), now=T0)
    assert int(redis_client.get(keys.channels(3))) == 1
    assert claims.reserve(c(3, "subscribe", "s3", "small", link="d"), now=T0) is None


def test_a_repeated_commit_counts_a_channel_once(tiers, redis_client):
    claims.reserve(c(4, "subscribe", "s1", "small"), now=T0)
    claims.commit(c(4, "subscribe", "s1", "small"), now=T0)
    claims.commit(c(4, "subscribe", "s1", "small"), now=T0)
    assert int(redis_client.get(keys.channels(4))) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_exceed_the_account_cap(tiers):
    """Threads race to reserve every action of one account, again and again, committing what
    they got: successes per day never exceed the account's cap."""
    actions = ("view", "reaction", "subscribe")
    committed = []

    def work(i):
        for round_ in range(4):
            action = actions[(i + round_) % 3]
            claim = c(9, action, f"t{i}.{round_}", "capped", link="a", post=i * 10 + round_)
            if claims.reserve(claim, now=T0) is None:
                claims.commit(claim, now=T0)
                committed.append(claim.token)

    run_concurrently(work, threads=12)
    assert len(committed) == 3
