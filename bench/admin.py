"""Admin speed with years of history: seeds 1,000,000 signals with their orders and fills
into a PostgreSQL database of its own (set-based SQL, seconds not hours), then measures the
server time and query count of the console's heaviest pages.

    make bench-admin                        # or: .venv/bin/python bench/admin.py
    BENCH_ADMIN_SIGNALS=200000 make bench-admin
    BENCH_ADMIN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/tvtrader_bench_admin make bench-admin

The target (issue 4): signals list, a filtered list and a signal detail page each under
300 ms server time, with a bounded number of queries. The machine is shared, so read the
median, not the worst run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

SIGNALS = int(os.environ.get("BENCH_ADMIN_SIGNALS", "1000000"))
STRATEGIES = 20
REPEAT = int(os.environ.get("BENCH_ADMIN_REPEAT", "7"))
TARGET_MS = 300


def bench_database_url() -> str:
    explicit = os.environ.get("BENCH_ADMIN_DATABASE_URL")
    if explicit:
        return explicit
    base = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/tvtrader_bench_admin"))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")
    os.environ.setdefault("TVTRADER_VAR_DIR", str(BASE_DIR / "var" / "bench-admin"))
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # allows the test client's host, keeps emails local


SIGNAL_SQL = """
INSERT INTO signals_signal (
    strategy_id, strategy_key, status, reason, action, ticker, exchange, price, volume, timeframe,
    tv_order_id, comment, market_position, prev_market_position, raw_body, content_type, payload,
    is_test, duplicate_count, enqueue_count, attempts,
    received_at, committed_at, started_at, sent_at, acked_at, first_fill_at, filled_at, finished_at
)
SELECT
    (%(ids)s::bigint[])[1 + g %% %(strategies)s], (%(keys)s::text[])[1 + g %% %(strategies)s],
    CASE WHEN g %% 100 < 85 THEN 'executed' WHEN g %% 100 < 90 THEN 'rejected' WHEN g %% 100 < 93 THEN 'blocked'
         WHEN g %% 100 < 96 THEN 'failed' ELSE 'skipped' END,
    CASE WHEN g %% 100 BETWEEN 85 AND 89 THEN 'invalid alert: price must be a number above zero'
         WHEN g %% 100 BETWEEN 90 AND 92 THEN 'blocked: this strategy''s kill switch is engaged'
         WHEN g %% 100 BETWEEN 93 AND 95 THEN 'failed: insufficient balance' ELSE '' END,
    (ARRAY['buy','sell','close_long','close_short','close_all'])[1 + g %% 5],
    (ARRAY['BTCUSDT.P','ETHUSDT.P','SOLUSDT.P','XRPUSDT.P','DOGEUSDT.P','BNBUSDT.P','ADAUSDT.P',
           'AVAXUSDT.P','LINKUSDT.P','DOTUSDT.P','BTCUSDT','ETHUSDT'])[1 + g %% 12],
    (ARRAY['BYBIT','BINANCE','BITGET','OKX'])[1 + (g / 7) %% 4],
    60000 + (g %% 5000), 0.01, '15', '', '', '', '',
    '{"action": "buy", "ticker": "BTCUSDT.P", "price": 65000, "passphrase": "***"}', 'application/json',
    '{"action": "buy", "ticker": "BTCUSDT.P", "price": 65000}'::jsonb,
    false, 0, 0, 1,
    ts, ts + interval '2 ms', ts + interval '8 ms',
    CASE WHEN g %% 100 < 85 THEN ts + (40 + g %% 60) * interval '1 ms' END,
    CASE WHEN g %% 100 < 85 THEN ts + (90 + g %% 80) * interval '1 ms' END,
    CASE WHEN g %% 100 < 85 THEN ts + (150 + g %% 200) * interval '1 ms' END,
    CASE WHEN g %% 100 < 85 THEN ts + (150 + g %% 200) * interval '1 ms' END,
    ts + interval '400 ms'
FROM generate_series(%(start)s, %(stop)s) AS g
CROSS JOIN LATERAL (SELECT now() - (%(total)s - g) * interval '60 seconds' AS ts) AS t
"""

ORDER_SQL = """
INSERT INTO execution_order (
    signal_id, strategy_id, account_id, leg, purpose, client_order_id, symbol, side, order_type, reduce_only,
    requested_qty, signal_price, status, exchange_order_id, filled_qty, avg_price, fee, fee_currency,
    slippage_bps, reason, replies, submit_count, lookup_count,
    created_at, submitted_at, acked_at, first_fill_at, last_fill_at, closed_at, updated_at
)
SELECT sig.id, sig.strategy_id, %(account)s, 0, 'open', 'tv' || sig.id || 'x0', 'BTC/USDT:USDT',
    CASE WHEN sig.action = 'buy' THEN 'buy' ELSE 'sell' END, 'market', false,
    0.01, sig.price, 'filled', 'ex' || sig.id, 0.01, sig.price * 1.0002, 0.0035, 'USDT',
    2.0, '', '[{"retCode": 0}]'::jsonb, 1, 0,
    sig.started_at, sig.sent_at, sig.acked_at, sig.filled_at, sig.filled_at, sig.filled_at, sig.filled_at
FROM signals_signal sig
WHERE sig.status = 'executed' AND sig.id BETWEEN %(start)s AND %(stop)s
"""

FILL_SQL = """
INSERT INTO execution_fill (order_id, trade_id, qty, price, fee, fee_currency, filled_at)
SELECT o.id, 't' || o.id, o.filled_qty, o.avg_price, o.fee, o.fee_currency, o.last_fill_at
FROM execution_order o WHERE o.id BETWEEN %(start)s AND %(stop)s
"""


def seed(total: int) -> None:
    from django.db import connection

    from execution.models import ExchangeAccount
    from signals.models import Signal
    from strategies.models import Strategy

    have = Signal.objects.count()
    if have >= total:
        print(f"database already holds {have:,} signals; reusing it")
        return
    account, _ = ExchangeAccount.objects.get_or_create(label="bench-paper")
    for i in range(STRATEGIES):
        Strategy.objects.get_or_create(
            strategy_id=f"bench-{i:02d}", defaults={"account": account, "expected_interval_minutes": 60}
        )
    strategies = list(Strategy.objects.filter(strategy_id__startswith="bench-").order_by("id"))
    ids = [st.pk for st in strategies]
    keys = [st.strategy_id for st in strategies]
    started = time.perf_counter()
    batch = 250_000
    with connection.cursor() as cursor:
        start = have + 1
        while start <= total:
            stop = min(start + batch - 1, total)
            cursor.execute(
                SIGNAL_SQL,
                {"start": start, "stop": stop, "total": total, "strategies": len(ids), "ids": ids, "keys": keys},
            )
            print(f"  signals {stop:,}/{total:,} ({time.perf_counter() - started:.0f} s)", flush=True)
            start = stop + 1
        cursor.execute("SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM signals_signal")
        lo, hi = cursor.fetchone()
        for s in range(lo, hi + 1, batch):
            cursor.execute(ORDER_SQL, {"account": account.pk, "start": s, "stop": s + batch - 1})
        print(f"  orders done ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM execution_order")
        lo, hi = cursor.fetchone()
        for s in range(lo, hi + 1, batch):
            cursor.execute(FILL_SQL, {"start": s, "stop": s + batch - 1})
        print(f"  fills done ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("ANALYZE signals_signal; ANALYZE execution_order; ANALYZE execution_fill;")
    print(f"seeded {total - have:,} signals with orders and fills in {time.perf_counter() - started:.1f} s")


def measure() -> list[tuple[str, float, float, int, int]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from execution.models import Order
    from signals.models import Signal
    from strategies.models import Strategy

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    strategy = Strategy.objects.order_by("id")[3]
    recent = Signal.objects.order_by("-id").values_list("pk", flat=True)[500]
    old = Signal.objects.order_by("id").values_list("pk", flat=True)[1000]
    coid = Order.objects.filter(signal_id__lte=old).order_by("-id").values_list("client_order_id", flat=True)[0]
    pages = [
        ("signals list", "/admin/signals/signal/"),
        ("signals list, page 50", "/admin/signals/signal/?p=50"),
        (
            "filtered: strategy + failed",
            f"/admin/signals/signal/?strategy__id__exact={strategy.pk}&status__exact=failed",
        ),
        (
            "filtered: action + exchange + 7 days",
            "/admin/signals/signal/?action=close_long&exchange=OKX&received_at__gte="
            + time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * 86400))
            + "+00%3A00%3A00%2B00%3A00",
        ),
        ("search: client order id", f"/admin/signals/signal/?q={coid}"),
        ("search: ticker", "/admin/signals/signal/?q=SOLUSDT.P"),
        ("signal detail (recent)", f"/admin/signals/signal/{recent}/change/"),
        ("signal detail (2 years old)", f"/admin/signals/signal/{old}/change/"),
        ("orders list", "/admin/execution/order/"),
        ("orders filtered: strategy", f"/admin/execution/order/?strategy__id__exact={strategy.pk}"),
        ("fills list", "/admin/execution/fill/"),
        ("dashboard", "/admin/"),
    ]
    results = []
    for name, url in pages:
        times = []
        queries = 0
        status = 0
        for i in range(REPEAT + 1):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - t0) * 1000
            status = response.status_code
            if i:  # the first run warms caches and connections
                times.append(elapsed)
            queries = len(ctx.captured_queries)
        results.append((name, statistics.median(times), max(times), queries, status))
    return results


def main() -> int:
    url = bench_database_url()
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench/admin.py needs PostgreSQL (BENCH_ADMIN_DATABASE_URL)", file=sys.stderr)
        return 2
    ensure_database(url)
    setup_django(url)
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False
    call_command("migrate", verbosity=0)
    seed(SIGNALS)
    from signals.models import Signal

    print(f"\n{Signal.objects.count():,} signals in {url.rsplit('/', 1)[-1]}; median of {REPEAT} runs\n")
    print(f"{'page':40} {'median ms':>10} {'max ms':>8} {'queries':>8} {'status':>7}")
    worst = 0.0
    for name, med, mx, queries, status in measure():
        print(f"{name:40} {med:10.1f} {mx:8.1f} {queries:8d} {status:7d}")
        if not name.startswith("dashboard"):
            worst = max(worst, med)
    verdict = "OK" if worst < TARGET_MS else "OVER TARGET"
    print(f"\nslowest list/detail page median: {worst:.1f} ms (target < {TARGET_MS} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
