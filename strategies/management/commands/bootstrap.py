"""First-run setup for `make run`: an admin login and a paper-trading demo strategy."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from execution.models import ExchangeAccount
from strategies.models import Strategy


class Command(BaseCommand):
    help = "Create an admin login (if none exists) and the paper-trading 'demo' strategy."

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "", password)
            path = settings.VAR_DIR / "admin_password"
            path.write_text(password)
            path.chmod(0o600)
            self.stdout.write(f"Created admin login: admin / {password}  (also in {path})")
        else:
            self.stdout.write("An admin login exists already.")
        account, created = ExchangeAccount.objects.get_or_create(
            label="paper", defaults={"exchange": ExchangeAccount.Exchange.BYBIT, "mode": ExchangeAccount.Mode.PAPER}
        )
        if created:
            self.stdout.write("Created paper-trading account 'paper' (simulated Bybit, 10000 USDT).")
        _, created = Strategy.objects.get_or_create(
            strategy_id="demo",
            defaults={"name": "Demo (paper trading)", "account": account},
        )
        if created:
            self.stdout.write("Created demo strategy 'demo' trading on the paper account.")
