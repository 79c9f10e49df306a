from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "tvtrader.ops"
    label = "ops"
    verbose_name = "Operations (notifications, watchdogs, metrics)"
    default_auto_field = "django.db.models.BigAutoField"
