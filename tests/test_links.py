import pytest

from telegram_tasks.links import InvalidTelegramLink, link_hash, normalize_link

VALID = [
    # raw input, canonical link, post id
    ("https://t.me/Durov", "https://t.me/durov", None),
    ("t.me/durov/", "https://t.me/durov", None),
    ("http://telegram.me/durov", "https://t.me/durov", None),
    ("@durov", "https://t.me/durov", None),
    ("@DuRoV", "https://t.me/durov", None),
    ("  https://t.me/durov  ", "https://t.me/durov", None),
    ("https://www.t.me/durov", "https://t.me/durov", None),
    ("HTTPS://T.ME/durov", "https://t.me/durov", None),
    ("telegram.dog/durov", "https://t.me/durov", None),
    ("https://t.me/durov?start=abc", "https://t.me/durov", None),
    ("https://t.me/durov#top", "https://t.me/durov", None),
    ("https://t.me/s/durov", "https://t.me/durov", None),
    ("t.me/durov/42", "https://t.me/durov", 42),
    ("https://t.me/Durov/42/", "https://t.me/durov", 42),
    ("https://t.me/durov/42?single", "https://t.me/durov", 42),
    ("https://t.me/s/durov/7", "https://t.me/durov", 7),
    ("https://t.me/+AbCdEfGh12345", "https://t.me/+AbCdEfGh12345", None),
    ("t.me/joinchat/AbCdEfGh12345", "https://t.me/+AbCdEfGh12345", None),
    ("https://telegram.me/joinchat/AbCdEfGh12345/", "https://t.me/+AbCdEfGh12345", None),
    ("https://t.me/c/1234567890/15", "https://t.me/c/1234567890", 15),
    ("tg://resolve?domain=Durov", "https://t.me/durov", None),
    ("tg://resolve?domain=durov&post=9", "https://t.me/durov", 9),
    ("tg://join?invite=AbCdEfGh12345", "https://t.me/+AbCdEfGh12345", None),
    ("https://t.me/some_channel_1", "https://t.me/some_channel_1", None),
]

INVALID = [
    "",
    "   ",
    "durov",  # a bare word is ambiguous: not a link
    "https://example.com/durov",
    "https://t.me.evil.com/durov",
    "ftp://t.me/durov",
    "https://t.me/",
    "https://t.me/abc",  # too short for a username
    "https://t.me/1durov",  # must start with a letter
    "https://t.me/du-rov",
    "https://t.me/durov/abc",
    "https://t.me/durov/0",
    "https://t.me/durov/42/extra",
    "https://t.me/addstickers/SomePack",
    "https://t.me/share/url?url=x",
    "https://t.me/+abc",  # invite hash too short
    "https://t.me/c/abc/1",
    "@",
    "tg://msg?text=hi",
    "https://t.me:8443/durov",
    "x" * 600,
    # urlsplit and .port raise ValueError for these (a 500 in the panel API, once)
    "https://t.me:abc/durov",
    "t.me:99999999/durov",
    "http://[::1/durov",
    "tg://[x",
]


@pytest.mark.parametrize(("raw", "link", "post_id"), VALID)
def test_valid_links_normalize(raw, link, post_id):
    target = normalize_link(raw)
    assert (target.link, target.post_id) == (link, post_id)
    assert target.link_hash == link_hash(link)
    assert len(target.link_hash) == 64


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_links_are_rejected_with_a_reason(raw):
    with pytest.raises(InvalidTelegramLink) as excinfo:
        normalize_link(raw)
    assert str(excinfo.value)


def test_one_channel_many_spellings_one_hash():
    spellings = ["https://t.me/Durov", "t.me/durov/", "http://telegram.me/durov", "@durov"]
    assert len({normalize_link(s).link_hash for s in spellings}) == 1


def test_invite_links_are_case_sensitive():
    assert (
        normalize_link("t.me/+AbCdEfGh123").link_hash
        != normalize_link("t.me/+abcdefgh123").link_hash
    )
