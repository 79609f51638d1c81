"""What the provider needs to perform an action beyond its link: the action's parameters.

An action declares them in its ``params`` knob (``ACTIONS``), each ``"required"`` or
``"optional"``::

    "reaction":  {..., "params": {"reactions": "required"}}   # the emoji, one or a mix
    "poll_vote": {..., "params": {"option": "required"}}      # 1-based
    "bot_start": {..., "params": {"start_param": "optional"}} # from the link's ?start=

An order keeps its values in ``Order.params``, validated here and only here
(``clean_params``: the model's ``clean`` and ``save``, the admin form, every API that makes
orders). Each task carries its own in its payload's ``params`` (``TaskParams``): a mix of
reactions is taken in turn, one emoji per task; the others are the order's values as they are.

This module is pure (settings and the ``emoji`` package): the order model imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import emoji

from telegram_tasks.conf import app_settings
from telegram_tasks.links import START_PARAM

REQUIRED, OPTIONAL = "required", "optional"
NEEDS = (REQUIRED, OPTIONAL)
# The parameters an action may declare, and the key each gives a task (see TaskParams).
PARAM_NAMES = ("reactions", "option", "start_param")
# What a link must name for an action (the ``target`` knob): a post, a chat (channel, group,
# invite) or a bot's username.
TARGETS = ("post", "chat", "bot")

MAX_REACTIONS = 20  # emoji in one mix (Telegram has about 75 standard reactions)
# A sanity bound, not Telegram's: an option the poll does not have is Telegram's to refuse
# (OPTION_INVALID), which ends the order.
MAX_POLL_OPTION = 100
# Telegram's standard reactions, as it spells them (no U+FE0F): the admin picker's list. Any
# emoji is accepted; one a channel does not allow is refused by Telegram (REACTION_INVALID).
STANDARD_REACTIONS = (
    "👍", "👎", "❤", "🔥", "🥰", "👏", "😁", "🤔", "🤯", "😱", "🤬", "😢",
    "🎉", "🤩", "🤮", "💩", "🙏", "👌", "🕊", "🤡", "🥱", "🥴", "😍", "🐳",
    "❤‍🔥", "🌚", "🌭", "💯", "🤣", "⚡", "🍌", "🏆", "💔", "🤨", "😐", "🍓",
    "🍾", "💋", "🖕", "😈", "😴", "😭", "🤓", "👻", "👨‍💻", "👀", "🎃", "🙈",
    "😇", "😨", "🤝", "✍", "🤗", "🫡", "🎅", "🎄", "☃", "💅", "🤪", "🗿",
    "🆒", "💘", "🙉", "🦄", "😘", "💊", "🙊", "😎", "👾", "🤷‍♂", "🤷", "🤷‍♀",
    "😡",
)  # fmt: skip
VARIATION_SELECTOR = "\ufe0f"


class InvalidParams(ValueError):
    """An order's params do not suit its action; the message says what is wrong, in the
    operator's words. ``param`` names the parameter at fault (None: the params as a whole)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def declared(action: str) -> dict[str, str]:
    """The params an action declares ({name: "required" | "optional"}); {} for none or an
    unknown action."""
    knobs = app_settings.ACTIONS.get(action) or {}
    return dict(knobs.get("params") or {})


def action_target(action: str) -> str:
    """What the action's link must name: its ``target`` knob, else a post for a one-shot
    action and a chat for any other."""
    knobs = app_settings.ACTIONS.get(action) or {}
    return knobs.get("target") or ("post" if knobs.get("one_shot") else "chat")


def clean_params(action: str, params: object) -> dict[str, Any]:
    """The normalized params of an order of ``action`` (``{}`` for an action that takes none);
    InvalidParams for an unknown action, a missing required parameter, a parameter the action
    does not take, or an invalid value."""
    if action not in app_settings.ACTIONS:
        raise InvalidParams(f"unknown action {action!r}")
    if params is None or params == "":
        params = {}
    if not isinstance(params, dict):
        raise InvalidParams(f"params must be a JSON object, got {type(params).__name__}")
    spec = declared(action)
    for name in params:
        if name not in spec:
            takes = ", ".join(spec) if spec else "none"
            raise InvalidParams(
                f"a {action} takes no parameter {name!r} (it takes: {takes})", param=name
            )
    cleaned: dict[str, Any] = {}
    for name, need in spec.items():
        value = params.get(name)
        if value is None or value == "" or value == []:
            if need == REQUIRED:
                raise InvalidParams(f"a {action} needs {MISSING[name]}", param=name)
            continue
        cleaned[name] = CLEANERS[name](value)
    return cleaned


def clean_reactions(value: object) -> list[str]:
    """One or more emoji: a list of strings, or one string of emoji (separated by spaces or
    commas, or not at all). Kept as given, in order; the same emoji twice is refused (with or
    without U+FE0F)."""
    if isinstance(value, str):
        items = [e["emoji"] for e in emoji.emoji_list(value)]
        rest = emoji.replace_emoji(value, "").replace(",", " ").strip()
        if rest:
            raise InvalidParams(f"reactions: {rest!r} is not an emoji", param="reactions")
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidParams('reactions must be a list of emoji, e.g. ["👍", "🔥"]', "reactions")
    cleaned: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if not isinstance(text, str) or not emoji.is_emoji(text):
            raise InvalidParams(f"reactions: {item!r} is not an emoji", param="reactions")
        bare = text.replace(VARIATION_SELECTOR, "")
        if bare in seen:
            raise InvalidParams(f"reactions: {text} is given twice", param="reactions")
        seen.add(bare)
        cleaned.append(text)
    if not cleaned:
        raise InvalidParams(f"a reaction needs {MISSING['reactions']}", param="reactions")
    if len(cleaned) > MAX_REACTIONS:
        raise InvalidParams(f"reactions: at most {MAX_REACTIONS} emoji", param="reactions")
    return cleaned


def clean_option(value: object) -> int:
    """A poll's option, 1-based: an integer, or a string of digits (the panel protocol's
    ``answer_number`` arrives as one)."""
    text = value.strip() if isinstance(value, str) else None
    # (ASCII digits only: str.isdigit also takes "²", which int() refuses.)
    if text and text.isascii() and text.isdigit() and len(text) <= 18:
        value = int(text)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_POLL_OPTION:
        raise InvalidParams(
            f"option must be a whole number from 1 to {MAX_POLL_OPTION} (the poll's answer, "
            f"1 for the first), got {value!r}",
            param="option",
        )
    return value


def clean_start_param(value: object) -> str:
    if not isinstance(value, str) or not START_PARAM.fullmatch(value):
        raise InvalidParams(
            f"start_param must be 1-64 letters, digits, _ or -, got {value!r}", param="start_param"
        )
    return value


CLEANERS = {
    "reactions": clean_reactions,
    "option": clean_option,
    "start_param": clean_start_param,
}
MISSING = {
    "reactions": 'its emoji: reactions, a list of one or more emoji, e.g. ["👍"] or ["👍", "🔥"]',
    "option": "the poll's option to vote for: option, 1 for the first answer",
    "start_param": "a start parameter: start_param (t.me/<bot>?start=<parameter>)",
}


@dataclass(frozen=True, slots=True)
class TaskParams:
    """What an order's tasks carry (``payload["params"]``): the same values for each task
    (``{"option": 2}``, ``{"start_param": "ref123"}``, ``{}``), and a mix of reactions taken in
    turn, one emoji per task (``{"reaction": "👍"}``)."""

    fixed: dict[str, Any]
    reactions: tuple[str, ...] = ()

    @property
    def rotates(self) -> bool:
        """Several emoji: which one a task gets depends on its turn."""
        return len(self.reactions) > 1

    def of_turn(self, turn: int) -> dict[str, Any]:
        """The params of the order's task number ``turn`` (0 for its first task ever)."""
        if not self.reactions:
            return self.fixed
        return {**self.fixed, "reaction": self.reactions[turn % len(self.reactions)]}


def task_params(action: str, params: object) -> TaskParams:
    """How an order's tasks take its params; InvalidParams when they do not suit the action
    (an order written around ``clean_params``: never handed to a provider)."""
    cleaned = clean_params(action, params)
    reactions = tuple(cleaned.pop("reactions", ()))
    return TaskParams(fixed=cleaned, reactions=reactions)
