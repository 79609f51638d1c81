"""Failure reasons as an operator reads them: each in a few words, in five groups (whose fault
it is, and so what to do), for the task list's filter, the dashboard and an order's end."""

from __future__ import annotations

from dataclasses import dataclass

from telegram_tasks.failures import Reason

R = Reason


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    what_to_do: str
    reasons: tuple[Reason, ...]


GROUPS = (
    Group(
        "account",
        "the account",
        "Telegram limits or lost the account: it is held, deactivated or full; the order goes on "
        "with other accounts.",
        (
            R.FLOOD_WAIT,
            R.PEER_FLOOD,
            R.WAIT_TOO_LONG,
            R.SLOWMODE_WAIT,
            R.ACCOUNT_DEAD,
            R.CHANNELS_TOO_MUCH,
            R.ACCOUNT_INACTIVE,
            R.ACCOUNT_HELD,
        ),
    ),
    Group(
        "target",
        "the target",
        "The channel, post, poll, emoji or bot cannot be used: the order stops (or drops the "
        "emoji); check the link with the customer.",
        (
            R.TARGET_UNAVAILABLE,
            R.POST_UNAVAILABLE,
            R.REACTION_INVALID,
            R.POLL_CLOSED,
            R.OPTION_INVALID,
            R.START_PARAM_INVALID,
            R.NOT_PARTICIPANT,
        ),
    ),
    Group(
        "time",
        "time ran out",
        "Nobody pulled, reported or finished the task in time: is the provider running, and "
        "reporting every task it pulls?",
        (
            R.EXPIRED,
            R.LEASE_ABANDONED,
            R.PENDING_TIMEOUT,
            R.ATTEMPTS_EXHAUSTED,
            R.LOCK_LOST,
            R.CLAIMS_CONFLICT,
        ),
    ),
    Group(
        "provider",
        "the provider",
        "The provider reported an error the broker does not know, or push could not reach it: "
        "read the task's last error; see the push circuit.",
        (R.PROVIDER_FAILED, R.PUSH_UNREACHABLE, R.PUSH_REJECTED),
    ),
    Group(
        "operator",
        "an operator or the order",
        "Someone canceled or paused the order, failed the task, disabled its provider, or the "
        "order ended meanwhile: nothing to fix.",
        (R.ORDER_CANCELED, R.ORDER_PAUSED, R.ORDER_INACTIVE, R.ADMIN_FAILED, R.PROVIDER_DISABLED),
    ),
)
BY_KEY = {g.key: g for g in GROUPS}

WORDS: dict[str, str] = {
    R.FLOOD_WAIT: "Telegram asked the account to wait (FLOOD_WAIT)",
    R.PEER_FLOOD: "Telegram limits the account (PEER_FLOOD): held a day",
    R.WAIT_TOO_LONG: "the wait Telegram asked for was too long: the order moved on",
    R.SLOWMODE_WAIT: "the chat's slow mode",
    R.ACCOUNT_DEAD: "the account is gone (banned, session revoked)",
    R.CHANNELS_TOO_MUCH: "the account is in too many channels",
    R.ACCOUNT_INACTIVE: "the account was deactivated",
    R.ACCOUNT_HELD: "the account's hold outlasts the task",
    R.TARGET_UNAVAILABLE: "the channel is private or gone",
    R.POST_UNAVAILABLE: "the post is gone",
    R.REACTION_INVALID: "the channel does not allow that emoji",
    R.POLL_CLOSED: "the poll is closed",
    R.OPTION_INVALID: "the poll has no such option",
    R.START_PARAM_INVALID: "the bot refuses the start parameter",
    R.NOT_PARTICIPANT: "the account was not in the channel",
    R.EXPIRED: "never pulled before its reservation ran out",
    R.LEASE_ABANDONED: "handed out, never reported",
    R.PENDING_TIMEOUT: "reported pending, never finished",
    R.ATTEMPTS_EXHAUSTED: "no hand-out left (MAX_ATTEMPTS)",
    R.LOCK_LOST: "its account went to another task",
    R.CLAIMS_CONFLICT: "refused once Redis got back writes it had lost",
    R.PROVIDER_FAILED: "the provider reported an error",
    R.PUSH_UNREACHABLE: "push: the provider never answered",
    R.PUSH_REJECTED: "push: the provider refused it",
    R.ORDER_CANCELED: "the order was canceled",
    R.ORDER_PAUSED: "the order was paused",
    R.ORDER_INACTIVE: "the order ended meanwhile",
    R.ADMIN_FAILED: "failed by an operator",
    R.PROVIDER_DISABLED: "its account's provider was disabled: the order moved on",
}


def words(reason: str) -> str:
    """A reason in an operator's words ("" for none); an unknown one as it is."""
    if not reason:
        return ""
    if reason.startswith(f"{R.PUSH_REJECTED}_"):
        return f"{WORDS[R.PUSH_REJECTED]} (HTTP {reason.rsplit('_', 1)[-1]})"
    return WORDS.get(reason, reason)


def group_of(reason: str) -> Group | None:
    if reason.startswith(f"{R.PUSH_REJECTED}_"):
        reason = R.PUSH_REJECTED
    return next((g for g in GROUPS if reason in g.reasons), None)
