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
        self.grant_roles()

    @staticmethod
    def grant_roles() -> None:
        """What the operators' roles (telegram_tasks.roles) may do with this app's models:
        viewers see the panel; operators also cancel, pause and resume orders; admins keep the
        catalogue and the customers (balances, API keys)."""
        from telegram_tasks import roles

        roles.grant(
            roles.VIEWER, "orders.view_service", "orders.view_customer", "orders.view_apikey",
            "orders.view_balanceentry",
        )  # fmt: skip
        roles.grant(roles.OPERATOR, "orders.cancel_order", "orders.pause_order")
        roles.grant(
            roles.ADMIN, "orders.add_service", "orders.change_service", "orders.add_customer",
            "orders.change_customer", "orders.adjust_balance", "orders.manage_keys",
        )  # fmt: skip
