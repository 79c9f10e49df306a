"""`manage.py reconcile [--fix] [--account LABEL]`: compare the database with the exchange.

Prints the differences as a table; exits 1 when drift is left unresolved, so cron or a
systemd timer can alert on it.
"""

from django.core.management.base import BaseCommand, CommandError

from execution.models import ExchangeAccount
from execution.reconcile import account_reconcile, format_reports, reports_record


class Command(BaseCommand):
    help = "Compare open orders and positions with each exchange; --fix adopts the exchange's truth."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="adopt the exchange's truth and record the changes")
        parser.add_argument("--account", help="only this account label")

    def handle(self, *args, fix=False, account=None, **options):
        accounts = ExchangeAccount.objects.all()
        if account:
            accounts = accounts.filter(label=account)
            if not accounts.exists():
                raise CommandError(f"no account labelled {account!r}")
        reports = [account_reconcile(account=a, fix=fix, actor="manage.py reconcile") for a in accounts]
        reports_record(reports)  # the dashboard shows what is left until the next reconciliation
        self.stdout.write(format_reports(reports) or "no accounts")
        unresolved = sum(len(r.unresolved) for r in reports)
        if unresolved:
            self.stderr.write(f"{unresolved} difference(s) unresolved")
            raise SystemExit(1)
