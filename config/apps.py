from django.apps import AppConfig


class ConfigAppConfig(AppConfig):
    name = "config"
    label = "config"
    verbose_name = "Project configuration"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers the checks)
