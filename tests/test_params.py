"""What each action needs beyond its link: validation in one place (telegram_tasks.params), the
order model, bot start links, and the knobs' system checks."""

import pytest
from django.core import checks
from django.core.exceptions import ValidationError

from orders.models import Order
from telegram_tasks.links import normalize_link
from telegram_tasks.params import InvalidParams, clean_params, task_params

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("action", "given", "cleaned"),
    [
        ("reaction", {"reactions": ["👍"]}, {"reactions": ["👍"]}),
        ("reaction", {"reactions": ["👍", "❤️", "🔥"]}, {"reactions": ["👍", "❤️", "🔥"]}),
        ("reaction", {"reactions": "👍 ❤️,🔥"}, {"reactions": ["👍", "❤️", "🔥"]}),
        ("reaction", {"reactions": "👍❤️"}, {"reactions": ["👍", "❤️"]}),
        ("reaction", {"reactions": [" 🎉 "]}, {"reactions": ["🎉"]}),
        ("poll_vote", {"option": 2}, {"option": 2}),
        ("poll_vote", {"option": "3"}, {"option": 3}),  # the panel's answer_number, a string
        ("bot_start", {}, {}),
        ("bot_start", {"start_param": "ref-123_A"}, {"start_param": "ref-123_A"}),
        ("view", {}, {}),
        ("view", None, {}),
        ("subscribe", {}, {}),
    ],
)
def test_valid_params_are_normalized(action, given, cleaned):
    assert clean_params(action, given) == cleaned


@pytest.mark.parametrize(
    ("action", "given", "says", "param"),
    [
        ("reaction", {}, "a reaction needs its emoji", "reactions"),
        ("reaction", {"reactions": []}, "a reaction needs its emoji", "reactions"),
        ("reaction", {"reactions": ["x"]}, "'x' is not an emoji", "reactions"),
        ("reaction", {"reactions": ["👍👍"]}, "is not an emoji", "reactions"),
        ("reaction", {"reactions": "👍 hi"}, "'hi' is not an emoji", "reactions"),
        ("reaction", {"reactions": ["❤", "❤️"]}, "given twice", "reactions"),
        ("reaction", {"reactions": 5}, "must be a list of emoji", "reactions"),
        ("reaction", {"reactions": ["👍"] * 21}, "given twice", "reactions"),
        ("reaction", {"reactions": ["👍"], "option": 1}, "takes no parameter 'option'", "option"),
        ("poll_vote", {}, "needs the poll's option", "option"),
        ("poll_vote", {"option": 0}, "from 1 to 100", "option"),
        ("poll_vote", {"option": True}, "from 1 to 100", "option"),
        ("poll_vote", {"option": 2.5}, "from 1 to 100", "option"),
        ("poll_vote", {"option": "two"}, "from 1 to 100", "option"),
        ("poll_vote", {"option": "²"}, "from 1 to 100", "option"),  # a digit int() refuses
        ("poll_vote", {"option": "9" * 5000}, "from 1 to 100", "option"),
        ("bot_start", {"start_param": "a b"}, "1-64 letters", "start_param"),
        ("view", {"reactions": ["👍"]}, "a view takes no parameter 'reactions' (it takes: none)",
         "reactions"),
        ("view", [], "params must be a JSON object, got list", None),
        ("nope", {}, "unknown action 'nope'", None),
    ],
)  # fmt: skip
def test_invalid_params_say_what_is_wrong(action, given, says, param):
    with pytest.raises(InvalidParams) as caught:
        clean_params(action, given)
    assert says in str(caught.value)
    assert caught.value.param == param
    assert isinstance(caught.value, ValueError)


def test_a_mix_has_at_most_twenty_emoji():
    from telegram_tasks.params import STANDARD_REACTIONS

    assert clean_params("reaction", {"reactions": list(STANDARD_REACTIONS[:20])})
    with pytest.raises(InvalidParams, match="at most 20 emoji"):
        clean_params("reaction", {"reactions": list(STANDARD_REACTIONS[:21])})


def test_task_params_of_each_turn():
    mix = task_params("reaction", {"reactions": ["👍", "❤️", "🔥"]})
    assert mix.rotates
    assert [mix.of_turn(k)["reaction"] for k in range(7)] == ["👍", "❤️", "🔥"] * 2 + ["👍"]
    single = task_params("reaction", {"reactions": ["👍"]})
    assert not single.rotates and single.of_turn(5) == {"reaction": "👍"}
    assert task_params("poll_vote", {"option": 2}).of_turn(9) == {"option": 2}
    assert task_params("bot_start", {"start_param": "ref"}).of_turn(0) == {"start_param": "ref"}
    assert task_params("view", {}).of_turn(0) == {}


# --- bot start links ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "start"),
    [
        ("https://t.me/MyShopBot?start=ref123", "ref123"),
        ("t.me/myshopbot?start=Ref_1-x", "Ref_1-x"),  # case kept: Telegram's is case-sensitive
        ("tg://resolve?domain=MyShopBot&start=ref123", "ref123"),
        ("t.me/myshopbot?start=", None),
        ("@myshopbot", None),
        ("t.me/durov/42?start=x", None),  # a post link takes no start parameter
    ],
)
def test_a_start_link_keeps_its_parameter_and_names_the_bot(raw, start):
    target = normalize_link(raw)
    assert target.start_param == start
    assert target.link_hash == normalize_link(target.link).link_hash
    assert target.start_link == (f"{target.link}?start={start}" if start else target.link)


def test_two_start_links_of_one_bot_share_one_key():
    one = normalize_link("t.me/MyShopBot?start=ref1")
    two = normalize_link("https://t.me/myshopbot?start=ref2")
    plain = normalize_link("@myshopbot")
    assert one.link_hash == two.link_hash == plain.link_hash
    assert (one.start_param, two.start_param) == ("ref1", "ref2")


def test_a_malformed_start_parameter_is_a_bad_link():
    from telegram_tasks.links import InvalidTelegramLink

    with pytest.raises(InvalidTelegramLink, match="start parameter"):
        normalize_link("t.me/myshopbot?start=" + "x" * 65)


# --- the order model ------------------------------------------------------------------------


def test_bot_start_order_keeps_the_start_link_and_its_param():
    order = Order.objects.create(action="bot_start", link="t.me/MyShopBot?start=ref123", quantity=2)
    assert order.link == "https://t.me/myshopbot?start=ref123"
    assert order.params == {"start_param": "ref123"}
    assert order.link_hash == normalize_link("@myshopbot").link_hash
    order.full_clean()  # stays valid once normalized
    plain = Order.objects.create(action="bot_start", link="t.me/myshopbot", quantity=1)
    assert (plain.link, plain.params) == ("https://t.me/myshopbot", {})
    given = Order.objects.create(
        action="bot_start", link="t.me/myshopbot", params={"start_param": "p2"}, quantity=1
    )
    assert given.link == "https://t.me/myshopbot?start=p2"


def test_a_start_parameter_of_a_subscribe_link_is_dropped():
    order = Order.objects.create(action="subscribe", link="t.me/durov?start=x", quantity=1)
    assert (order.link, order.params) == ("https://t.me/durov", {})


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"action": "reaction", "link": "t.me/durov/1"}, "params", "needs its emoji"),
        ({"action": "reaction", "link": "t.me/durov/1", "params": {"reactions": ["no"]}},
         "params", "not an emoji"),
        ({"action": "poll_vote", "link": "t.me/durov/1"}, "params", "the poll's option"),
        ({"action": "poll_vote", "link": "t.me/durov/1", "params": {"option": -1}}, "params",
         "from 1 to 100"),
        ({"action": "view", "link": "t.me/durov/1", "params": {"option": 1}}, "params",
         "takes no parameter"),
        ({"action": "bot_start", "link": "t.me/mybot?start=a", "params": {"start_param": "b"}},
         "params", "contradicts the link's 'a'"),
    ],
)  # fmt: skip
def test_save_refuses_params_that_do_not_suit_the_action_and_writes_nothing(fields, field, says):
    with pytest.raises(ValidationError) as caught:
        Order.objects.create(quantity=1, **fields)
    assert says in " ".join(caught.value.message_dict[field])
    assert not Order.objects.exists()
    with pytest.raises(ValidationError) as cleaned:
        Order(quantity=1, **fields).full_clean()
    assert says in " ".join(cleaned.value.message_dict[field])


@pytest.mark.parametrize(
    ("action", "link", "field", "says"),
    [
        ("poll_vote", "t.me/durov", "post_id", "acts on a post"),
        ("bot_start", "t.me/durov", "link", "acts on a bot"),
        ("bot_start", "t.me/somebot/5", "link", "acts on a bot"),
        ("bot_start", "t.me/+AbCdEfGh12", "link", "acts on a bot"),
    ],
)
def test_clean_refuses_a_link_that_does_not_name_what_the_action_acts_on(action, link, field, says):
    params = {"option": 1} if action == "poll_vote" else {}
    with pytest.raises(ValidationError) as caught:
        Order(action=action, link=link, quantity=1, params=params).full_clean()
    assert says in " ".join(caught.value.message_dict[field])


def test_an_unknown_action_is_refused_by_clean_but_its_params_are_not_judged():
    order = Order.objects.create(action="nope", link="t.me/durov", quantity=1, params={"x": 1})
    assert order.params == {"x": 1}
    with pytest.raises(ValidationError) as caught:
        order.full_clean()
    assert set(caught.value.message_dict) == {"action"}


# --- the knobs' system checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected_id"),
    [
        ({"ACTIONS": {"reaction": {"params": {"emoji": "required"}}}}, "telegram_tasks.E016"),
        ({"ACTIONS": {"reaction": {"params": {"reactions": "yes"}}}}, "telegram_tasks.E016"),
        ({"ACTIONS": {"reaction": {"params": ["reactions"]}}}, "telegram_tasks.E016"),
        ({"ACTIONS": {"poll_vote": {"target": "message"}}}, "telegram_tasks.E017"),
        ({"TIERS": {"premium": {"actions": {"reaction": {"params": {}}}}}}, "telegram_tasks.E026"),
    ],
)
def test_a_malformed_params_or_target_knob_fails_the_system_check(settings, overrides, expected_id):
    settings.TELEGRAM_TASKS = overrides
    errors = [e for e in checks.run_checks() if e.id == expected_id]
    assert errors, checks.run_checks()


def test_the_default_knobs_pass_the_checks():
    assert not [e for e in checks.run_checks() if e.id.startswith("telegram_tasks.E")]


def test_a_custom_action_declares_its_params(settings):
    settings.TELEGRAM_TASKS = {"ACTIONS": {"story_react": {"params": {"reactions": "optional"}}}}
    assert clean_params("story_react", {}) == {}
    assert clean_params("story_react", {"reactions": "🔥"}) == {"reactions": ["🔥"]}
