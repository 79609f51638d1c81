"""The roles an install needs, as Django groups (``manage.py create_operator_groups``):

``viewer``    sees everything (the dashboard, every list and page) and changes nothing;
``operator``  also makes and edits orders and runs every operator action on orders, tasks and
              accounts (cancel, pause, resume; requeue, fail; deactivate, reactivate, clear hold);
``admin``     also edits accounts (tier, phone, meta) and the rest of the install's set-up that
              other apps grant it (the panel: services, customers, balances, API keys).

Each role holds the one below it. Nobody deletes through the admin (see ``admin.lists``), so
no role has a delete permission. Another app adds its own models' permissions to a role with
``grant`` (the project's app does, in its ``AppConfig.ready``: the order model's own actions,
the panel); the order model's view, add and change come from here, through ORDER_MODEL."""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from telegram_tasks.conf import get_order_model

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

_granted: dict[str, set[str]] = {role: set() for role in ROLES}


def grant(role: str, *permissions: str) -> None:
    """Give a role (and the roles above it) these permissions, each "app_label.codename"."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
    _granted[role].update(permissions)


def role_permissions() -> dict[str, list[str]]:
    """Each role's permissions ("app_label.codename"), sorted; a role holds those below it."""
    order = get_order_model()._meta
    on_order = f"{order.app_label}.%s_{order.model_name}"
    own = {
        VIEWER: {
            "telegram_tasks.view_telegramtask",  # (the dashboard too)
            "telegram_tasks.view_telegramaccount",
            "telegram_tasks.view_membership",
            on_order % "view",
        },
        OPERATOR: {
            on_order % "add",
            on_order % "change",
            "telegram_tasks.requeue_telegramtask",
            "telegram_tasks.fail_telegramtask",
            "telegram_tasks.manage_telegramaccount",
        },
        ADMIN: {"telegram_tasks.add_telegramaccount", "telegram_tasks.change_telegramaccount"},
    }
    if apps.is_installed("django_celery_beat"):
        # Beat's schedule: seen by the admin role, which may switch an entry off and on.
        own[ADMIN] |= {
            "django_celery_beat.view_periodictask",
            "django_celery_beat.change_periodictask",
        }
    out: dict[str, list[str]] = {}
    held: set[str] = set()
    for role in ROLES:
        held |= own[role] | _granted[role]
        out[role] = sorted(held)
    return out


def create_groups(*, names: dict[str, str] | None = None) -> dict[str, int]:
    """Make (or update) one group per role holding exactly that role's permissions; returns
    each group's name and how many it holds. ``names``: the group of each role, when not the
    role's own name. ValueError naming the permissions missing (run ``migrate`` first)."""
    wanted = role_permissions()
    every = {p for perms in wanted.values() for p in perms}
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.select_related("content_type").filter(
            codename__in={p.split(".", 1)[1] for p in every}
        )
    }
    missing = sorted(every - set(found))
    if missing:
        raise ValueError(f"permissions missing (has migrate run?): {', '.join(missing)}")
    out = {}
    with transaction.atomic():
        for role, perms in wanted.items():
            name = (names or {}).get(role, role)
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set([found[p] for p in perms])
            out[name] = len(perms)
    return out
