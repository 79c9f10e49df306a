from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tvtrader.ops"
    label = "ops"
    verbose_name = "Operations (notifications, watchdogs, metrics)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            receivers,  # noqa: F401  (connects to the engine's events)
            telegram,  # noqa: F401  (registers the ops.telegram_poll task)
        )
