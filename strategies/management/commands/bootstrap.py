"""First-run setup for `make run` and deploy/install.sh: an admin login and a paper-trading
demo strategy. A new admin's password is written to var/admin_password (mode 600); `make run`
shows it once in its banner and then deletes that file (-v 0 keeps this command quiet there)."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from execution.models import ExchangeAccount
from strategies.models import Strategy


class Command(BaseCommand):
    help = "Create an admin login (if none exists) and the paper-trading 'demo' strategy."

    def handle(self, *args, **options):
        say = self.stdout.write if options["verbosity"] >= 1 else (lambda _message: None)
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            path = settings.VAR_DIR / "admin_password"
            # Written before the user exists: interrupted in between, the next run makes a new
            # one, rather than leaving an admin whose password nobody has seen.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(password)
            path.chmod(0o600)
            User.objects.create_superuser("admin", "", password)
            say(f"Created admin login: admin / {password}  (also in {path})")
        else:
            say("An admin login exists already.")
        account, created = ExchangeAccount.objects.get_or_create(
            label="paper", defaults={"exchange": ExchangeAccount.Exchange.BYBIT, "mode": ExchangeAccount.Mode.PAPER}
        )
        if created:
            say("Created paper-trading account 'paper' (simulated Bybit, 10000 USDT).")
        _, created = Strategy.objects.get_or_create(
            strategy_id="demo",
            defaults={"name": "Demo (paper trading)", "account": account},
        )
        if created:
            say("Created demo strategy 'demo' trading on the paper account.")
