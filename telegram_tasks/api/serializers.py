"""Request and response bodies of the provider API. Strict: unknown fields are errors."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import MaxValueValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from telegram_tasks.api.parsers import stored_json_size
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import error_code
from telegram_tasks.services.report_items import ReportIn as ReportIn_
from telegram_tasks.services.report_items import ReportState

TASK_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # a ULID (Crockford base32)
MAX_WAIT_SECONDS = 20  # a long-poll's longest wait (pull's wait_seconds)
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields and any body that is not a JSON object."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": [f"expected a JSON object, got {type(data).__name__}"]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class StrictRegex(serializers.RegexField):
    """A string matching a pattern (stated in the schema); never a number turned into one."""

    def __init__(self, regex: str, message: str, **kwargs: Any) -> None:
        super().__init__(regex, trim_whitespace=False, **kwargs)
        self.error_messages["invalid"] = message

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class TaskIdField(StrictRegex):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            TASK_ID.pattern, "not a task id (26-character ULID)", min_length=26, max_length=26,
            **kwargs,
        )  # fmt: skip


class StrictBool(serializers.BooleanField):
    """true or false only: no "yes", 1 or "on"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class StrictInt(serializers.IntegerField):
    """A JSON integer only: no strings, no floats."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("must be an integer")
        return super().to_internal_value(data)


class StrictChar(serializers.CharField):
    """A JSON string, taken as sent (no trimming)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


def limit_stored_json(value: Any) -> Any:
    """The one size limit of every JSON value we store (depth is limited at parse time)."""
    if value is not None and stored_json_size(value) > app_settings.JSON_MAX_BYTES:
        raise serializers.ValidationError(
            f"larger than {app_settings.JSON_MAX_BYTES} bytes of JSON once stored"
        )
    return value


# --- errors ------------------------------------------------------------------------------------


class ErrorBody(serializers.Serializer):
    code = serializers.CharField(help_text="stable machine-readable code")
    message = serializers.CharField(help_text="what is wrong, naming the field")
    details = serializers.DictField(help_text="per-field errors or context")


class ErrorEnvelope(serializers.Serializer):
    ok = serializers.BooleanField(default=False)
    error = ErrorBody()


# --- accounts sync -----------------------------------------------------------------------------


class AccountIn(StrictSerializer):
    provider_account_id = StrictChar(max_length=255, min_length=1)
    phone = StrictChar(max_length=32, required=False, allow_blank=True)
    is_active = StrictBool(required=False)
    tier = StrictChar(
        required=False, min_length=1, max_length=32, help_text="a configured tier (TIERS)"
    )
    meta = serializers.DictField(required=False)

    def validate_meta(self, value: Any) -> dict[str, Any]:
        return limit_stored_json(value)

    def validate_tier(self, value: str) -> str:
        if value not in app_settings.TIERS:
            known = ", ".join(sorted(app_settings.TIERS))
            raise serializers.ValidationError(f"unknown tier {value!r}; configured: {known}")
        return value


@extend_schema_field(AccountIn(many=True))
class AccountItemsField(serializers.ListField):
    """Items are validated one by one (``validate_accounts``): a bad item is reported in the
    response's ``errors`` while the good ones are synced."""

    child = serializers.JSONField(allow_null=True)


class AccountsSyncIn(StrictSerializer):
    accounts = AccountItemsField(allow_empty=True, help_text="accounts to upsert")


class AccountSyncError(serializers.Serializer):
    index = serializers.IntegerField()
    provider_account_id = serializers.CharField(allow_null=True)
    errors = serializers.DictField()


class AccountsSyncOut(serializers.Serializer):
    ok = serializers.BooleanField()
    synced = serializers.IntegerField()
    errors = AccountSyncError(many=True)


def validate_accounts(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate each item on its own: (valid items, per-item errors). A provider_account_id
    seen earlier in the same batch is an error for the later item."""
    valid, errors, seen = [], [], set()
    for index, item in enumerate(items):
        pid = item.get("provider_account_id") if isinstance(item, dict) else None
        serializer = AccountIn(data=item)
        if not serializer.is_valid():
            errors.append(
                {"index": index, "provider_account_id": _str(pid), "errors": serializer.errors}
            )
            continue
        data = serializer.validated_data
        if data["provider_account_id"] in seen:
            errors.append(
                {
                    "index": index,
                    "provider_account_id": data["provider_account_id"],
                    "errors": {"provider_account_id": ["appears earlier in this batch"]},
                }
            )
            continue
        seen.add(data["provider_account_id"])
        valid.append(dict(data))
    return valid, errors


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --- pull --------------------------------------------------------------------------------------


class PullIn(StrictSerializer):
    limit = StrictInt(min_value=1, max_value=1000, help_text="1..PULL_MAX_LIMIT")
    request_id = StrictRegex(
        REQUEST_ID.pattern,
        "1-64 characters of A-Z a-z 0-9 _ . : -",
        required=False,
        help_text="repeat a pull with the same id (within PULL_REPLAY_SECONDS) to get the "
        "same tasks again instead of new ones",
    )
    accounts = serializers.ListField(
        child=StrictChar(max_length=255, min_length=1),
        required=False,
        max_length=1000,
        help_text="only tasks of these provider_account_ids ([] matches none)",
    )
    wait_seconds = StrictInt(
        required=False,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text="long-poll: with nothing to hand out, wait up to this long for tasks "
        "(answered as soon as they come, else with an empty list)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The bound follows the setting (the schema served shows the one in force).
        self.fields["limit"] = StrictInt(
            min_value=1, max_value=app_settings.PULL_MAX_LIMIT, help_text="1..PULL_MAX_LIMIT"
        )


class AccountOut(serializers.Serializer):
    provider_account_id = serializers.CharField(allow_null=True)
    phone = serializers.CharField(allow_null=True)


class TaskParamsOut(serializers.Serializer):
    """A task's params: only the keys its action takes (see docs/provider-guide.md)."""

    reaction = serializers.CharField(required=False, help_text="reaction: the emoji to set")
    option = serializers.IntegerField(
        required=False, min_value=1, help_text="poll_vote: the option to vote for, 1-based"
    )
    start_param = serializers.CharField(
        required=False, help_text="bot_start: the start parameter to send the bot"
    )


class TaskOut(serializers.Serializer):
    task_id = serializers.CharField()
    order_id = serializers.IntegerField()
    action = serializers.CharField()
    link = serializers.CharField()
    account = AccountOut()
    per_call = serializers.IntegerField()
    post_id = serializers.IntegerField(allow_null=True)
    link_hash = serializers.CharField()
    params = TaskParamsOut(
        help_text='what the action needs beyond the link: reaction {"reaction": "👍"}, '
        'poll_vote {"option": 2} (1-based), bot_start {"start_param": "ref123"} (absent '
        "for a start without one), {} for the others"
    )
    attempt = serializers.IntegerField(help_text="how many times it was handed out before")
    leased_until = serializers.DateTimeField()
    lease_id = serializers.CharField(help_text="identifies this hand-out; send it back")


class PullOut(serializers.Serializer):
    ok = serializers.BooleanField()
    tasks = TaskOut(many=True)
    count = serializers.IntegerField()
    replayed = serializers.BooleanField(required=False)


# --- report ------------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "maxLength": 2000},
            {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "nullable": True},
                    "message": {"type": "string", "nullable": True},
                },
                "additionalProperties": False,
            },
        ],
        "nullable": True,
    }
)
class ErrorField(serializers.JSONField):
    """The provider's error: a Telegram error string or {"code", "message"}."""


class ReportIn(StrictSerializer):
    task_id = TaskIdField()
    state = serializers.ChoiceField(choices=[s.value for s in ReportState])
    ok = StrictBool(required=False, allow_null=True)
    error = ErrorField(
        required=False,
        allow_null=True,
        help_text='a string ("FLOOD_WAIT_30") or {"code", "message"}',
    )
    retry_after = StrictInt(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="seconds to wait before the task runs again (at most MAX_WAIT_SECONDS)",
    )
    provider_task_id = StrictChar(required=False, allow_null=True, max_length=255)
    data = serializers.JSONField(required=False, allow_null=True)
    lease_id = StrictChar(required=False, allow_null=True, max_length=26, min_length=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The bound follows the setting (the schema served shows the one in force).
        self.fields["retry_after"].max_value = app_settings.MAX_WAIT_SECONDS
        self.fields["retry_after"].validators.append(
            MaxValueValidator(app_settings.MAX_WAIT_SECONDS)
        )

    def validate_data(self, value: Any) -> Any:
        return limit_stored_json(value)

    def validate_error(self, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            if len(value) > 2000:
                raise serializers.ValidationError("at most 2000 characters")
            return {"code": error_code(value), "message": value}
        if isinstance(value, dict) and set(value) <= {"code", "message"}:
            code, message = value.get("code"), value.get("message")
            if all(v is None or isinstance(v, str) for v in (code, message)):
                return {"code": error_code(code or ""), "message": (message or code or "")[:2000]}
        raise serializers.ValidationError('must be a string or {"code": str, "message": str}')

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("ok") is False and attrs["state"] == ReportState.DONE:
            raise serializers.ValidationError({"ok": ["ok is false but state is done"]})
        if attrs.get("ok") is True and attrs["state"] == ReportState.FAILED:
            raise serializers.ValidationError({"ok": ["ok is true but state is failed"]})
        if attrs.get("retry_after") and attrs["state"] != ReportState.FAILED:
            raise serializers.ValidationError({"retry_after": ["only a failed report may retry"]})
        return attrs


def report_in(data: dict[str, Any]) -> ReportIn_:
    """A validated report body as the completion service takes it (the report endpoint and a
    pushed task's answer both come through here)."""
    error = data.get("error") or {}
    return ReportIn_(
        task_id=data["task_id"],
        state=data["state"],
        error_code=error.get("code") or None,
        error_message=error.get("message") or None,
        retry_after=data.get("retry_after"),
        provider_task_id=data.get("provider_task_id"),
        data=data.get("data"),
        lease_id=data.get("lease_id"),
    )


class ReportBatchIn(StrictSerializer):
    reports = ReportIn(many=True)


class ReportOutBody(serializers.Serializer):
    ok = serializers.BooleanField()
    task_id = serializers.CharField()
    status = serializers.CharField(required=False, help_text="the task's status after the report")
    duplicate = serializers.BooleanField(required=False)


class ReportItemOut(serializers.Serializer):
    task_id = serializers.CharField()
    ok = serializers.BooleanField()
    status = serializers.CharField(required=False)
    duplicate = serializers.BooleanField(required=False)
    error = ErrorBody(required=False)


class ReportBatchOut(serializers.Serializer):
    ok = serializers.BooleanField()
    results = ReportItemOut(many=True)


# --- extend and release ------------------------------------------------------------------------


class LeaseExtendItem(StrictSerializer):
    task_id = TaskIdField()
    lease_id = StrictChar(max_length=26, min_length=1)
    seconds = StrictInt(min_value=1, max_value=86400, required=False)


class LeaseItem(StrictSerializer):
    task_id = TaskIdField()
    lease_id = StrictChar(max_length=26, min_length=1)


class ExtendIn(StrictSerializer):
    leases = serializers.ListField(child=LeaseExtendItem())


class ReleaseIn(StrictSerializer):
    leases = serializers.ListField(child=LeaseItem())


class LeaseItemOut(serializers.Serializer):
    task_id = serializers.CharField()
    ok = serializers.BooleanField()
    leased_until = serializers.DateTimeField(required=False)
    error = ErrorBody(required=False)


class LeasesOut(serializers.Serializer):
    ok = serializers.BooleanField()
    results = LeaseItemOut(many=True)
