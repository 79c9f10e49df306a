"""Print the TradingView alert message (`signals.alert_message`, the one source).

`--offline` reads nothing from the database (the installer runs it before there is one, and
the README's copy is checked against it): the strategy id and passphrase are what you pass.
Without it, the strategy must exist, and a strategy with its own passphrase gets that
placeholder; `--passphrase` prints the real one in (for a terminal only you can read).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from signals.alert_message import (
    KINDS,
    PASSPHRASE_PLACEHOLDER,
    STRATEGY_PASSPHRASE_PLACEHOLDER,
    alert_message,
)


class Command(BaseCommand):
    help = "Print the TradingView alert message to paste for a strategy."

    def add_arguments(self, parser):
        parser.add_argument("--strategy", default="demo", help="strategy_id (default demo)")
        parser.add_argument("--kind", choices=KINDS, default="strategy", help="Pine strategy or indicator alert")
        parser.add_argument("--passphrase", default="", help="print this passphrase instead of the placeholder")
        parser.add_argument("--offline", action="store_true", help="do not read the database")

    def handle(self, *args, strategy="demo", kind="strategy", passphrase="", offline=False, **options):
        volume = "0.01"
        placeholder = PASSPHRASE_PLACEHOLDER
        if not offline:
            from strategies.models import Strategy

            found = Strategy.objects.filter(strategy_id=strategy).first()
            if found is None:
                raise CommandError(f"no strategy with strategy_id {strategy!r} (or pass --offline)")
            placeholder = STRATEGY_PASSPHRASE_PLACEHOLDER if found.passphrase_hash else PASSPHRASE_PLACEHOLDER
            if found.size_value:
                volume = f"{found.size_value.normalize():f}"
        self.stdout.write(
            alert_message(strategy_id=strategy, passphrase=passphrase or placeholder, kind=kind, volume=volume)
        )
