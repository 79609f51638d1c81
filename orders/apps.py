from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orders.services import settle_ended
        from telegram_tasks.signals import orders_ended

        # An order the broker ended (cancel, or a stop of its own) is settled in the same
        # transaction that ended its tasks (orders.services.ending).
        orders_ended.connect(settle_ended, dispatch_uid="orders.settle_ended")
