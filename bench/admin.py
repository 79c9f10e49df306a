"""Admin speed with years of history: seeds 1,000,000 signals with their orders and fills
into a PostgreSQL database of its own (`bench_admin…`, see bench.common.bench_database_url;
created when missing, reused when already seeded, nothing else touched; set-based SQL whose
columns follow the models, seconds not hours), then measures the
server time and query count of the console's heaviest pages.

    make bench-admin                        # or: .venv/bin/python bench/admin.py
    BENCH_ADMIN_SIGNALS=200000 make bench-admin
    BENCH_ADMIN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_admin make bench-admin

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
    from bench.common import bench_database_url as named

    return named("admin")


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


# Only the columns the console's pages show or filter on get set-based values here; every
# other column of the model takes its field's default, read from the model when the seed
# runs (see insert_select), so a column added to the schema later is filled in by itself.
SIGNAL_COLUMNS = {
    "strategy_id": "(%(ids)s::bigint[])[1 + g %% %(strategies)s::int]",
    "strategy_key": "(%(keys)s::text[])[1 + g %% %(strategies)s::int]",
    "status": """CASE WHEN g %% 100 < 85 THEN 'executed' WHEN g %% 100 < 90 THEN 'rejected'
        WHEN g %% 100 < 93 THEN 'blocked' WHEN g %% 100 < 96 THEN 'failed' ELSE 'skipped' END""",
    "reason": """CASE WHEN g %% 100 BETWEEN 85 AND 89 THEN 'invalid alert: price must be a number above zero'
        WHEN g %% 100 BETWEEN 90 AND 92 THEN 'blocked: this strategy''s kill switch is engaged'
        WHEN g %% 100 BETWEEN 93 AND 95 THEN 'failed: insufficient balance' ELSE '' END""",
    "action": "(ARRAY['buy','sell','close_long','close_short','close_all'])[1 + g %% 5]",
    "ticker": """(ARRAY['BTCUSDT.P','ETHUSDT.P','SOLUSDT.P','XRPUSDT.P','DOGEUSDT.P','BNBUSDT.P','ADAUSDT.P',
        'AVAXUSDT.P','LINKUSDT.P','DOTUSDT.P','BTCUSDT','ETHUSDT'])[1 + g %% 12]""",
    "exchange": "(ARRAY['BYBIT','BINANCE','BITGET','OKX'])[1 + (g / 7) %% 4]",
    "price": "60000 + (g %% 5000)",
    "volume": "0.01",
    "timeframe": "'15'",
    "raw_body": """'{"action": "buy", "ticker": "BTCUSDT.P", "price": 65000, "passphrase": "***"}'""",
    "content_type": "'application/json'",
    "payload": """'{"action": "buy", "ticker": "BTCUSDT.P", "price": 65000}'::jsonb""",
    "attempts": "1",
    "received_at": "ts",
    "committed_at": "ts + interval '2 ms'",
    "started_at": "ts + interval '8 ms'",
    "sent_at": "CASE WHEN g %% 100 < 85 THEN ts + (40 + g %% 60) * interval '1 ms' END",
    "acked_at": "CASE WHEN g %% 100 < 85 THEN ts + (90 + g %% 80) * interval '1 ms' END",
    "first_fill_at": "CASE WHEN g %% 100 < 85 THEN ts + (150 + g %% 200) * interval '1 ms' END",
    "filled_at": "CASE WHEN g %% 100 < 85 THEN ts + (150 + g %% 200) * interval '1 ms' END",
    "finished_at": "ts + interval '400 ms'",
}
SIGNAL_FROM = """FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
CROSS JOIN LATERAL (SELECT now() - (%(total)s::bigint - g) * interval '60 seconds' AS ts) AS t"""

ORDER_COLUMNS = {
    "signal_id": "sig.id",
    "strategy_id": "sig.strategy_id",
    "account_id": "%(account)s::bigint",
    "leg": "0",
    "purpose": "'open'",
    "client_order_id": "'tv' || sig.id || 'x0'",
    "symbol": "'BTC/USDT:USDT'",
    "side": "CASE WHEN sig.action = 'buy' THEN 'buy' ELSE 'sell' END",
    "order_type": "'market'",
    "requested_qty": "0.01",
    "signal_price": "sig.price",
    "status": "'filled'",
    "exchange_order_id": "'ex' || sig.id",
    "filled_qty": "0.01",
    "avg_price": "sig.price * 1.0002",
    "fee": "0.0035",
    "fee_currency": "'USDT'",
    "slippage_bps": "2.0",
    "replies": """'[{"retCode": 0}]'::jsonb""",
    "submit_count": "1",
    "created_at": "sig.started_at",
    "submitted_at": "sig.sent_at",
    "acked_at": "sig.acked_at",
    "first_fill_at": "sig.filled_at",
    "last_fill_at": "sig.filled_at",
    "closed_at": "sig.filled_at",
    "updated_at": "sig.filled_at",
}
ORDER_FROM = (
    "FROM signals_signal sig WHERE sig.status = 'executed' AND sig.id BETWEEN %(start)s::bigint AND %(stop)s::bigint"
)

FILL_COLUMNS = {
    "order_id": "o.id",
    "trade_id": "'t' || o.id",
    "qty": "o.filled_qty",
    "price": "o.avg_price",
    "fee": "o.fee",
    "fee_currency": "o.fee_currency",
    "filled_at": "o.last_fill_at",
}
FILL_FROM = "FROM execution_order o WHERE o.id BETWEEN %(start)s::bigint AND %(stop)s::bigint"


def insert_select(model, columns: dict[str, str], from_sql: str) -> tuple[str, dict]:
    """`INSERT INTO <model's table> (every concrete column) SELECT … <from_sql>`: the
    columns in `columns` take those SQL expressions; every other column takes its model
    field's default, converted by the field itself (auto_now fields: now()). A NOT NULL
    column with no default and no expression stops the seed with its name."""
    from django.db import connection

    names, values, params = [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        names.append(connection.ops.quote_name(field.column))
        if field.column in columns:
            values.append(columns.pop(field.column))
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("now()")
        else:
            default = field.get_default()
            if default is None and not field.null:
                raise SystemExit(
                    f"bench/admin.py: {model._meta.label}.{field.name} is NOT NULL without a default: "
                    "give it a value in the seed"
                )
            params[f"d_{field.column}"] = field.get_db_prep_save(default, connection)
            values.append(f"%(d_{field.column})s")
    if columns:
        raise SystemExit(f"bench/admin.py: {model._meta.label} has no column(s) {', '.join(columns)}")
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(names)})\nSELECT {', '.join(values)}\n{from_sql}"
    return sql, params


def seed(total: int) -> None:
    from django.db import connection

    from execution.models import ExchangeAccount, Fill, Order
    from signals.models import Signal
    from strategies.models import Strategy

    signal_sql, signal_params = insert_select(Signal, dict(SIGNAL_COLUMNS), SIGNAL_FROM)
    order_sql, order_params = insert_select(Order, dict(ORDER_COLUMNS), ORDER_FROM)
    fill_sql, fill_params = insert_select(Fill, dict(FILL_COLUMNS), FILL_FROM)
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
        # Only what this call adds gets orders and fills (a database seeded smaller before is
        # topped up, not seeded twice).
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM signals_signal")
        signals_before = cursor.fetchone()[0]
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM execution_order")
        orders_before = cursor.fetchone()[0]
        start = have + 1
        while start <= total:
            stop = min(start + batch - 1, total)
            cursor.execute(
                signal_sql,
                {
                    **signal_params,
                    "start": start,
                    "stop": stop,
                    "total": total,
                    "strategies": len(ids),
                    "ids": ids,
                    "keys": keys,
                },
            )
            print(f"  signals {stop:,}/{total:,} ({time.perf_counter() - started:.0f} s)", flush=True)
            start = stop + 1
        cursor.execute(
            "SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM signals_signal WHERE id > %s", [signals_before]
        )
        lo, hi = cursor.fetchone()
        for s in range(lo, hi + 1, batch):
            cursor.execute(order_sql, {**order_params, "account": account.pk, "start": s, "stop": s + batch - 1})
        print(f"  orders done ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute(
            "SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM execution_order WHERE id > %s", [orders_before]
        )
        lo, hi = cursor.fetchone()
        for s in range(lo, hi + 1, batch):
            cursor.execute(fill_sql, {**fill_params, "start": s, "stop": s + batch - 1})
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
