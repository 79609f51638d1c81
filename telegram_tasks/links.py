"""Normalization of Telegram links, so that two orders for one target share one ``link_hash``.

Forms accepted (scheme, ``www.`` and a trailing slash optional; query and fragment ignored but
for a bot's ``start``):

- ``@name``, ``t.me/name``, ``telegram.me/name``, ``telegram.dog/name``, ``t.me/s/name`` —
  a public username, case-insensitive: normalized to ``https://t.me/name`` in lower case;
- ``t.me/name/42`` — post 42 of channel ``name``;
- ``t.me/+HASH``, ``t.me/joinchat/HASH`` — an invite link, case-sensitive: ``https://t.me/+HASH``;
- ``t.me/c/123456/42`` — a post of a private channel by its numeric id;
- ``tg://resolve?domain=name[&post=42]`` and ``tg://join?invite=HASH``;
- ``t.me/name?start=PARAM`` (and ``tg://resolve?domain=name&start=PARAM``) — a bot's start link:
  the parameter (case-sensitive) is kept as ``start_param``, while ``link`` and ``link_hash``
  name the bot, so two start links of one bot share one key (``start_link`` puts it back).

Anything else raises ``InvalidTelegramLink`` with a message that says what was expected.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

HOSTS = {"t.me", "telegram.me", "telegram.dog"}
# Paths of t.me that are not chats: stickers, proxies, sharing, login and the like.
RESERVED = {
    "addstickers", "addemoji", "addtheme", "addlist", "share", "proxy", "socks", "login",
    "setlanguage", "bg", "iv", "confirmphone", "invoice", "giftcode", "boost", "m", "contact",
}  # fmt: skip
USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
INVITE = re.compile(r"[A-Za-z0-9_-]{8,64}")
POST = re.compile(r"[1-9][0-9]{0,17}")
CHANNEL_ID = re.compile(r"[1-9][0-9]{0,18}")
# Telegram's deep-link start parameter (t.me/<bot>?start=…): up to 64 of A-Z a-z 0-9 _ -.
START_PARAM = re.compile(r"[A-Za-z0-9_-]{1,64}")

EXPECTED = "expected @name, t.me/name, t.me/name/<post>, t.me/+<invite> or t.me/joinchat/<invite>"


class InvalidTelegramLink(ValueError):
    """The input is not a Telegram chat, channel or post link."""


@dataclass(frozen=True, slots=True)
class TelegramTarget:
    link: str  # canonical chat link, e.g. https://t.me/durov (a start parameter left out)
    post_id: int | None
    kind: str  # "username" | "invite" | "private"
    start_param: str | None = None  # a bot link's ?start= parameter, as given

    @property
    def link_hash(self) -> str:
        """The chat's (a bot's: whatever the start parameter)."""
        return link_hash(self.link)

    @property
    def start_link(self) -> str:
        """The link with its start parameter (a bot start's link); the chat link without one."""
        return start_link(self.link, self.start_param)


def start_link(link: str, start_param: str | None) -> str:
    return f"{link}?start={start_param}" if start_param else link


def link_hash(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()


def normalize_link(raw: str) -> TelegramTarget:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidTelegramLink(f"link is empty; {EXPECTED}")
    text = raw.strip()
    if len(text) > 512:
        raise InvalidTelegramLink("link is longer than 512 characters")
    if text.startswith("@"):
        return _username(text[1:], None, raw)
    if text.lower().startswith("tg://"):
        return _tg_scheme(text, raw)
    if "://" not in text:
        text = "https://" + text
    try:  # urlsplit and .port raise ValueError for a bad port or an unclosed "[" host
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidTelegramLink(f"{raw!r} is not a Telegram link; {EXPECTED}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidTelegramLink(f"{raw!r} is not a Telegram link; {EXPECTED}")
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if host not in HOSTS or port not in (None, 80, 443) or parts.username:
        raise InvalidTelegramLink(f"{raw!r} is not a Telegram link; {EXPECTED}")
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise InvalidTelegramLink(f"{raw!r} names no chat; {EXPECTED}")
    head, rest = segments[0], segments[1:]
    if head.startswith("+"):
        return _invite(head[1:], rest, raw)
    if head.lower() == "joinchat" and rest:
        return _invite(rest[0], rest[1:], raw)
    if head.lower() == "s" and rest:
        head, rest = rest[0], rest[1:]
    if head.lower() == "c" and rest:
        return _private(rest, raw)
    if head.lower() in RESERVED:
        raise InvalidTelegramLink(f"{raw!r} is a t.me/{head} link, not a chat; {EXPECTED}")
    if len(rest) > 1:
        raise InvalidTelegramLink(f"{raw!r} has too many path segments; {EXPECTED}")
    post = _post(rest[0], raw) if rest else None
    start = None if post else _start(parse_qs(parts.query).get("start", [""])[0], raw)
    return _username(head, post, raw, start)


def _start(value: str, raw: str) -> str | None:
    if not value:
        return None
    if not START_PARAM.fullmatch(value):
        raise InvalidTelegramLink(
            f"{raw!r}: start parameter {value!r} is not 1-64 letters, digits, _ or -"
        )
    return value


def _username(name: str, post: int | None, raw: str, start: str | None = None) -> TelegramTarget:
    if not USERNAME.fullmatch(name):
        raise InvalidTelegramLink(
            f"{raw!r}: {name!r} is not a valid Telegram username (4-32 letters, digits or _, "
            "starting with a letter)"
        )
    link = f"https://t.me/{name.lower()}"
    return TelegramTarget(link=link, post_id=post, kind="username", start_param=start)


def _invite(code: str, rest: list[str], raw: str) -> TelegramTarget:
    if rest or not INVITE.fullmatch(code):
        raise InvalidTelegramLink(f"{raw!r} is not a valid invite link; {EXPECTED}")
    return TelegramTarget(link=f"https://t.me/+{code}", post_id=None, kind="invite")


def _private(rest: list[str], raw: str) -> TelegramTarget:
    if len(rest) > 2 or not CHANNEL_ID.fullmatch(rest[0]):
        raise InvalidTelegramLink(f"{raw!r} is not a valid t.me/c/<channel id>/<post> link")
    post = _post(rest[1], raw) if len(rest) == 2 else None
    return TelegramTarget(link=f"https://t.me/c/{rest[0]}", post_id=post, kind="private")


def _post(segment: str, raw: str) -> int:
    if not POST.fullmatch(segment):
        raise InvalidTelegramLink(f"{raw!r}: post id {segment!r} is not a positive integer")
    return int(segment)


def _tg_scheme(text: str, raw: str) -> TelegramTarget:
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidTelegramLink(f"{raw!r} is not a supported tg:// link; {EXPECTED}") from None
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    verb = (parts.netloc or parts.path.strip("/")).lower()
    if verb == "resolve" and "domain" in query:
        post = _post(query["post"], raw) if "post" in query else None
        start = None if post else _start(query.get("start", ""), raw)
        return _username(query["domain"], post, raw, start)
    if verb == "join" and "invite" in query:
        return _invite(query["invite"], [], raw)
    raise InvalidTelegramLink(f"{raw!r} is not a supported tg:// link; {EXPECTED}")
