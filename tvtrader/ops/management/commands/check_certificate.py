"""`manage.py check_certificate HOST [--port 443] [--warn-days 14]`: days left on the TLS
certificate TradingView will see. Exit 0 fine, 1 expiring soon, 2 expired/unverifiable/down."""

from django.conf import settings
from django.core.management.base import BaseCommand

from tvtrader.ops.notifications import notification_send
from tvtrader.ops.watchdogs import certificate_check


class Command(BaseCommand):
    help = "Report the days left on HOST's TLS certificate; warn below --warn-days."

    def add_arguments(self, parser):
        parser.add_argument("host")
        parser.add_argument("--port", type=int, default=443)
        parser.add_argument("--warn-days", type=int, default=settings.CERTIFICATE_WARN_DAYS)
        parser.add_argument("--cafile", help="Trust this CA bundle instead of the system's (for private CAs).")
        parser.add_argument("--timeout", type=float, default=10.0)
        parser.add_argument("--notify", action="store_true", help="Send a notification when not OK.")

    def handle(self, *args, host, port, warn_days, cafile, timeout, notify, **options):
        report = certificate_check(host, port, cafile=cafile, timeout=timeout)
        where = f"{host}:{port}"
        if not report.reachable:
            return self._finish(2, f"ERROR  {where}: {report.error}", notify)
        self.stdout.write(f"subject  {report.subject}\nissuer   {report.issuer}")
        self.stdout.write(f"expires  {report.not_after:%Y-%m-%d %H:%M} UTC ({report.days_left:.1f} days left)")
        if report.days_left <= 0:
            return self._finish(2, f"ERROR  {where}: the certificate has EXPIRED", notify)
        if not report.verified:
            return self._finish(2, f"ERROR  {where}: the certificate does not verify ({report.verify_error})", notify)
        if report.days_left < warn_days:
            return self._finish(
                1, f"WARNING  {where}: the certificate expires in {report.days_left:.1f} days (< {warn_days})", notify
            )
        self.stdout.write(f"OK  {where}: valid and trusted for {report.days_left:.0f} more days")

    def _finish(self, code: int, message: str, notify: bool):
        self.stdout.write(message)
        if notify:
            notification_send(event="certificate", text=f"🔐 {message}")
        raise SystemExit(code)
