"""`manage.py send_test_signal --url URL --strategy ID`: fire a correctly formed alert at a
running instance (this one or a remote one), report the answer, then follow the signal
through the API (with --token) or /health until it settles.

This is a real alert: the strategy trades on it exactly as if TradingView had sent it. Aim
it at a paper strategy unless you mean it."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

FINAL = {"executed", "partial", "skipped", "failed", "rejected", "blocked"}
GOOD = {"executed", "partial", "skipped"}


def api_base(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    prefix = path[: -len("/tv-webhook")] if path.endswith("/tv-webhook") else ""
    return f"{parts.scheme}://{parts.netloc}{prefix}"


class Command(BaseCommand):
    help = "Send a real, correctly formed alert to a running instance and report what became of it."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="The webhook URL, e.g. https://bot.example.com/tv-webhook")
        parser.add_argument("--strategy", required=True, help="strategy_id")
        parser.add_argument(
            "--passphrase", help="Webhook passphrase (default: WEBHOOK_PASSPHRASE of this installation)."
        )
        parser.add_argument(
            "--action", default="buy", choices=["buy", "sell", "close_long", "close_short", "close_all"]
        )
        parser.add_argument("--ticker", default="BTCUSDT.P")
        parser.add_argument("--exchange", default="BYBIT")
        parser.add_argument("--price", default="65000")
        parser.add_argument("--volume", default="0.001")
        parser.add_argument(
            "--token", default=os.environ.get("TVTRADER_API_TOKEN", ""), help="API token (read scope) to follow it."
        )
        parser.add_argument("--wait", type=float, default=30.0, help="Seconds to follow the signal (0: don't).")
        parser.add_argument("--timeout", type=float, default=10.0)
        parser.add_argument("--yes", action="store_true", help="Don't ask for confirmation.")

    def handle(self, *args, **opts):
        now = datetime.now(UTC).replace(microsecond=0)
        alert = {
            "passphrase": opts["passphrase"] if opts["passphrase"] is not None else settings.WEBHOOK_PASSPHRASE,
            "action": opts["action"],
            "ticker": opts["ticker"],
            "exchange": opts["exchange"],
            "price": opts["price"],
            "volume": opts["volume"],
            "strategy_id": opts["strategy"],
            "bar_time": now.isoformat().replace("+00:00", "Z"),
            "fired_at": now.isoformat().replace("+00:00", "Z"),
            "comment": "send_test_signal",
        }
        shown = {**alert, "passphrase": "[redacted]"}
        self.stdout.write(f"POST {opts['url']}\n{json.dumps(shown)}")
        if not opts["yes"]:
            answer = input(f"This is a real alert: strategy {opts['strategy']} will act on it. Send? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("not sent")

        started = time.perf_counter()
        try:
            # text/plain, exactly as TradingView sends a message it did not parse itself.
            response = requests.post(
                opts["url"],
                data=json.dumps(alert).encode(),
                headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "tvtrader-send-test-signal"},
                timeout=opts["timeout"],
            )
        except requests.RequestException as exc:
            raise CommandError(f"could not reach {opts['url']}: {type(exc).__name__}: {exc}") from None
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = {"raw": response.text[:500]}
        server_ms = body.get("elapsed_ms", "?") if isinstance(body, dict) else "?"
        self.stdout.write(f"answer: HTTP {response.status_code} in {elapsed:.1f} ms (server {server_ms} ms)")
        self.stdout.write(f"        {json.dumps(body)}")
        if elapsed > 3000:
            self.stdout.write("WARNING: slower than TradingView's 3-second cut-off; it would have given up.")
        status = body.get("status") if isinstance(body, dict) else None
        signal_id = body.get("signal_id") if isinstance(body, dict) else None
        if response.status_code >= 400 or status not in ("accepted", "duplicate"):
            raise SystemExit(1)
        if not opts["wait"] or signal_id is None:
            return
        base = api_base(opts["url"])
        if opts["token"]:
            final = self._follow_api(base, signal_id, opts)
            if final not in GOOD:
                raise SystemExit(1)
        else:
            self._report_health(base, opts)

    def _follow_api(self, base: str, signal_id: int, opts) -> str | None:
        url = f"{base}/api/signals/{signal_id}/"
        headers = {"Authorization": f"Bearer {opts['token']}"}
        deadline = time.monotonic() + opts["wait"]
        last_status = None
        data: dict = {}
        while True:
            try:
                response = requests.get(url, headers=headers, timeout=opts["timeout"])
            except requests.RequestException as exc:
                raise CommandError(f"could not follow the signal at {url}: {type(exc).__name__}") from None
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}: {response.text[:200]}")
            data = response.json()
            if data["status"] != last_status:
                last_status = data["status"]
                self.stdout.write(f"signal #{signal_id}: {last_status} {data.get('reason') or ''}".rstrip())
            if last_status in FINAL or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        if last_status not in FINAL:
            self.stdout.write(
                f"signal #{signal_id} is still {last_status} after {opts['wait']:.0f} s: is a worker running? "
                f"(see {base}/health)"
            )
            return last_status
        timing = []
        for label, start, end in (("queue", "committed_at", "started_at"), ("to exchange", "received_at", "sent_at")):
            if data.get(start) and data.get(end):
                delta = datetime.fromisoformat(data[end]) - datetime.fromisoformat(data[start])
                timing.append(f"{label} {delta.total_seconds() * 1000:.0f} ms")
        orders = data.get("orders") or []
        self.stdout.write(f"final: {last_status}; orders {orders or 'none'}; {', '.join(timing) or 'no timings'}")
        return last_status

    def _report_health(self, base: str, opts) -> None:
        time.sleep(min(opts["wait"], 2.0))
        try:
            response = requests.get(f"{base}/health", timeout=opts["timeout"])
            report = response.json()
        except (requests.RequestException, ValueError) as exc:
            self.stdout.write(f"health: unavailable ({type(exc).__name__})")
            return
        checks = ", ".join(f"{k} {'ok' if v.get('ok') else 'DOWN'}" for k, v in report.get("checks", {}).items())
        self.stdout.write(
            f"health: HTTP {response.status_code}: {checks}; last signal {report.get('last_signal_age_s')} s ago"
        )
        self.stdout.write("(pass --token with an API token to follow the signal to its final state)")
