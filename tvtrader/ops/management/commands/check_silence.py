"""`manage.py check_silence`: strategies (and the whole webhook) that stopped receiving alerts.
Exit status 1 when anything is silent, so cron and systemd timers can alert."""

from django.core.management.base import BaseCommand

from tvtrader.ops.watchdogs import silence_check_and_notify, silences


class Command(BaseCommand):
    help = "List strategies with no alert for longer than their expected interval, and a silent endpoint."

    def add_arguments(self, parser):
        parser.add_argument("--notify", action="store_true", help="Also send notifications (as beat does).")

    def handle(self, *args, notify, **options):
        found = silences()
        if notify:
            silence_check_and_notify()
        if not found:
            self.stdout.write("OK: every strategy with an expected interval has heard from TradingView in time.")
            return
        for silence in found:
            self.stdout.write(f"SILENT  {silence.describe()}")
        raise SystemExit(1)
