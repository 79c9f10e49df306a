"""The admin app config that installs tvtrader's console site (see admin_site.py)."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """Django's admin with tvtrader's site: the dashboard as its index, kill switches."""

    default_site = "strategies.admin_site.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from .admin_tools import install_plain_decimals

        install_plain_decimals()
