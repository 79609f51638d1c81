"""Buttons at the top of an object's page that run one of its list's actions on that object
alone (Requeue a task, Clear hold on an account, Cancel an order …): shown only to users with
the action's permission and only where the action applies; a POST, then back to the page with
the action's message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse


@dataclass(frozen=True)
class Button:
    name: str  # the URL's last part: <object id>/<name>/
    label: str
    action: str  # the ModelAdmin's action method, called with a queryset of the one object
    permission: str  # has_<permission>_permission(request), as the action's own
    title: str = ""  # what it does, on hover
    applies: Callable[[Any], bool] = lambda obj: True  # whether to offer it for this object


class ObjectButtons:
    """A ModelAdmin mixin: ``buttons`` on the change page (the template
    ``admin/telegram_tasks/change_form_buttons.html`` draws them)."""

    buttons: tuple[Button, ...] = ()
    change_form_template = "admin/telegram_tasks/change_form_buttons.html"

    def _button_url_name(self, button: Button) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return f"{opts.app_label}_{opts.model_name}_{button.name.replace('-', '_')}"

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view  # type: ignore[attr-defined]
        own = [
            path(
                f"<path:object_id>/{b.name}/",
                view(partial(self.button_view, button=b)),
                name=self._button_url_name(b),
            )
            for b in self.buttons
        ]
        return own + super().get_urls()  # type: ignore[misc]

    def permitted_buttons(self, request: HttpRequest, obj: Any) -> list[dict[str, str]]:
        name = self.admin_site.name  # type: ignore[attr-defined]
        return [
            {
                "url": reverse(f"{name}:{self._button_url_name(b)}", args=[obj.pk]),
                "label": b.label,
                "title": b.title,
                "name": b.name,
            }
            for b in self.buttons
            if self._allowed(request, b) and b.applies(obj)
        ]

    def _allowed(self, request: HttpRequest, button: Button) -> bool:
        return getattr(self, f"has_{button.permission}_permission")(request)

    def change_view(
        self, request: Any, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        extra = {"object_buttons": self.permitted_buttons(request, obj) if obj else []}
        return super().change_view(  # type: ignore[misc]
            request, object_id, form_url, {**extra, **(extra_context or {})}
        )

    def button_view(self, request: HttpRequest, object_id: str, button: Button) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._allowed(request, button):
            raise PermissionDenied
        queryset = self.model.objects.filter(pk=unquote(object_id))  # type: ignore[attr-defined]
        obj = queryset.first()
        opts = self.model._meta  # type: ignore[attr-defined]
        page = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",  # type: ignore[attr-defined]
            args=[object_id],
        )
        if obj is None or not button.applies(obj):
            messages.warning(request, f"{button.label}: not possible now (the page was old).")
            return HttpResponseRedirect(page)
        getattr(self, button.action)(request, queryset)
        return HttpResponseRedirect(page)
