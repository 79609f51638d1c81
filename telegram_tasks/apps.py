from django.apps import AppConfig


class TelegramTasksConfig(AppConfig):
    name = "telegram_tasks"
    verbose_name = "Telegram tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from telegram_tasks import checks, host_checks  # noqa: F401  (registers them)
