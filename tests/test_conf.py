import pytest
from django.core import checks

from telegram_tasks.conf import DEFAULTS, app_settings


def test_defaults_hold_every_spec_key():
    spec_keys = {
        "ORDER_MODEL", "LEASE_SECONDS", "RESERVE_LOCK_SECONDS", "STATE_TTL_SECONDS",
        "DEDUPE_TTL_SECONDS", "PULL_MAX_LIMIT", "MAX_ATTEMPTS", "PENDING_TTL_SECONDS",
        "GENERATION_TICK_SECONDS", "MAX_TASKS_PER_ORDER_PER_PASS", "ACCOUNT_SCAN_BUDGET", "ACTIONS",
    }  # fmt: skip
    assert spec_keys <= set(DEFAULTS)
    assert app_settings.LEASE_SECONDS == 60
    assert app_settings.policy("subscribe").gate == "subscribe"
    assert app_settings.policy("view").one_shot is True


def test_partial_override_merges_key_by_key(settings):
    settings.TELEGRAM_TASKS = {
        "LEASE_SECONDS": 30,
        "ACTIONS": {"view": {"cooldown": 2}, "poll": {"daily_cap": 3}},
    }
    assert app_settings.LEASE_SECONDS == 30
    assert app_settings.RESERVE_LOCK_SECONDS == 120
    view = app_settings.policy("view")
    assert (view.cooldown, view.daily_cap, view.one_shot) == (2, 500, True)
    poll = app_settings.policy("poll")
    assert (poll.cooldown, poll.daily_cap, poll.gate, poll.one_shot) == (0, 3, None, False)
    assert "subscribe" in app_settings.ACTIONS


def test_unknown_setting_attribute_is_an_error():
    with pytest.raises(AttributeError):
        _ = app_settings.NOPE


def _ids(errors):
    return {e.id for e in errors}


@pytest.mark.parametrize(
    ("actions", "expected_id", "named"),
    [
        ({"view": {"gate": "maybe"}}, "telegram_tasks.E014", "view"),
        ({"reaction": {"cooldown": -1}}, "telegram_tasks.E012", "reaction"),
        ({"subscribe": {"daily_cap": -5}}, "telegram_tasks.E013", "subscribe"),
        ({"view": {"one_shot": "yes"}}, "telegram_tasks.E015", "view"),
        ({"view": {"colldown": 3}}, "telegram_tasks.E011", "view"),
    ],
)
def test_bad_policies_fail_the_system_check_naming_the_action(
    settings, actions, expected_id, named
):
    settings.TELEGRAM_TASKS = {"ACTIONS": actions}
    errors = checks.run_checks()
    matching = [e for e in errors if e.id == expected_id]
    assert matching and named in matching[0].msg


def test_bad_numbers_and_keys_fail_the_system_check(settings):
    settings.TELEGRAM_TASKS = {"LEASE_SECONDS": 0, "LEASE_SECONDZ": 5, "ORDER_MODEL": "nope.Nope"}
    assert {"telegram_tasks.E001", "telegram_tasks.E002", "telegram_tasks.E003"} <= _ids(
        checks.run_checks()
    )


@pytest.mark.parametrize(("wait", "refused"), [(0, False), (2, False), (-1, True), (1.5, True)])
def test_the_group_commit_wait_may_be_zero_but_not_negative(settings, wait, refused):
    settings.PROVIDER_TOKEN = "configured"
    settings.TELEGRAM_TASKS = {"REPORT_GROUP_WAIT_MS": wait}
    errors = [e for e in checks.run_checks() if e.id == "telegram_tasks.E002"]
    assert bool(errors) is refused
    if refused:
        assert "REPORT_GROUP_WAIT_MS" in errors[0].msg and "non-negative" in errors[0].msg


def test_default_configuration_passes_the_checks(settings):
    settings.PROVIDER_TOKEN = "configured"
    assert not [e for e in checks.run_checks() if e.id and e.id.startswith("telegram_tasks")]


def test_missing_secret_key_without_debug_is_refused(settings):
    from config.settings import INSECURE_DEV_SECRET_KEY

    settings.DEBUG = False
    settings.SECRET_KEY = INSECURE_DEV_SECRET_KEY
    assert "config.E001" in _ids(checks.run_checks(tags=["security"]))


def test_debug_with_public_host_is_warned(settings):
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["broker.example.com"]
    assert "config.W001" in _ids(checks.run_checks(tags=["security"]))
    settings.ALLOWED_HOSTS = ["localhost"]
    assert "config.W001" not in _ids(checks.run_checks(tags=["security"]))


# --- tiers ---------------------------------------------------------------------------------


def test_tiers_merge_with_the_default_tier_and_actions(settings):
    settings.TELEGRAM_TASKS = {
        "TIERS": {
            "premium": {"account_cooldown": 10},
            "farm": {"max_channels": 50, "actions": {"view": {"daily_cap": 7}}},
        }
    }
    premium, farm = app_settings.tier("premium"), app_settings.tier("farm")
    assert (premium.max_channels, premium.account_cooldown) == (1000, 10)
    assert (farm.max_channels, farm.account_cooldown, farm.account_daily_cap) == (50, 0, None)
    # The default premium override survives a partial override of the tier.
    assert app_settings.policy("subscribe", "premium").daily_cap == 40
    assert app_settings.policy("view", "farm").daily_cap == 7
    assert app_settings.policy("view", "farm").cooldown == 5  # the rest from ACTIONS
    assert app_settings.policy("view").daily_cap == 500
    assert app_settings.tier("unknown") == app_settings.tier("default").__class__(
        tier="unknown", max_channels=500, account_cooldown=0, account_daily_cap=None
    )


@pytest.mark.parametrize(
    ("tiers", "code"),
    [
        ({"default": None}, "telegram_tasks.E020"),
        ({"x": {"max_chanels": 3}}, "telegram_tasks.E021"),
        ({"x": {"max_channels": 0}}, "telegram_tasks.E022"),
        ({"x": {"account_daily_cap": -1}}, "telegram_tasks.E023"),
        ({"x": {"account_cooldown": "soon"}}, "telegram_tasks.E024"),
        ({"x": {"actions": {"poke": {"cooldown": 1}}}}, "telegram_tasks.E025"),
        ({"x": {"actions": {"view": {"cooldown": -1}}}}, "telegram_tasks.E012"),
    ],
)
def test_bad_tiers_fail_the_system_check(settings, tiers, code):
    settings.TELEGRAM_TASKS = {"TIERS": tiers}
    assert code in _ids(checks.run_checks())
