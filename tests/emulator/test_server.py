"""Server-level behaviour: concurrency, the request log, the admin HTTP API,
the transport redirect and the command-line developer server."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import ccxt
import pytest

from emulator import ExchangeEmulator, FaultRule
from execution.exchanges.redirect import RedirectAdapter, redirect_exchange

from .conftest import KEY, SECRET

ROOT = Path(__file__).resolve().parents[2]


def _signed_create(port: int, body: dict, secret: str = SECRET) -> tuple[int, dict]:
    """One Bybit V5 order/create on its own connection, signed like ccxt."""
    payload = json.dumps(body, separators=(",", ":"))
    ts, recv = str(int(time.time() * 1000)), "5000"
    sign = hmac.new(secret.encode(), (ts + KEY + recv + payload).encode(), hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/v5/order/create",
            body=payload,
            headers={
                "Content-Type": "application/json",
                "X-BAPI-API-KEY": KEY,
                "X-BAPI-TIMESTAMP": ts,
                "X-BAPI-RECV-WINDOW": recv,
                "X-BAPI-SIGN": sign,
            },
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _admin(emu, method: str, route: str, data=None):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(f"{emu.url}/__emulator/{route}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_250_concurrent_signed_orders(emu):
    n = 250
    symbols = sorted({m.symbol for m in emu.engine.markets.values()})
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def client(i: int) -> None:
        market = emu.engine.markets[symbols[i % len(symbols)]]
        # About 20 USDT notional: above every minimum, a whole number of steps.
        steps = math.ceil(20 / (float(market.price) * float(market.qty_step)))
        body = {
            "symbol": market.symbol,
            "side": "Buy",
            "orderType": "Market",
            "category": "linear",
            "qty": str(market.qty_step * steps),
            "orderLinkId": f"conc-{i}",
        }
        barrier.wait()
        t = time.monotonic()
        status, answer = _signed_create(emu.port, body)
        results[i] = (status, answer, time.monotonic() - t)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = {(status, answer["retCode"]) for status, answer, _ in results}
    assert codes == {(200, 0)}
    ids = {answer["result"]["orderLinkId"] for _, answer, _ in results}
    assert ids == {f"conc-{i}" for i in range(n)}
    assert len(emu.orders()) == n
    slowest = max(elapsed for *_, elapsed in results)
    # 250 simultaneous connects and orders on a 2-core box, client threads
    # included: seconds at worst, never a timeout.
    assert slowest < 5.0


def test_signature_is_checked_over_the_raw_body(emu):
    body = {
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "category": "linear",
        "qty": "0.01",
    }
    status, answer = _signed_create(emu.port, body, secret="not-the-secret")
    assert (status, answer["retCode"]) == (200, 10004)
    status, answer = _signed_create(emu.port, body)
    assert (status, answer["retCode"]) == (200, 0)


def test_request_record_timestamps_and_fields(emu, bybit):
    before = time.time()
    bybit.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "rec-1"})
    after = time.time()
    [record] = emu.requests("order/create")
    assert before <= record.recv_wall <= after
    assert record.venue == "bybit" and record.operation == "create_order"
    assert record.account == KEY and record.symbol == "BTCUSDT"
    assert record.client_order_id == "rec-1" and record.booked
    assert record.host == "api.bybit.com"  # ccxt kept its production URL
    assert record.status == 200 and record.code == 0 and record.outcome == "ok"
    assert 0 <= record.duration_ms < 100
    monos = [r.recv_mono for r in emu.requests()]
    assert monos == sorted(monos)
    assert emu.requests(symbol="BTC/USDT:USDT") == [record]


def test_binance_records_hide_signatures(emu, binance):
    binance.fetch_balance()
    record = emu.requests("/fapi/v3/account")[0]
    assert "signature" not in record.query and "signature" not in record.params
    assert record.host == "fapi.binance.com"


def test_admin_http_api(emu, bybit):
    answer = _admin(
        emu,
        "POST",
        "faults",
        [
            {"action": "ret_code", "endpoint": "order/create", "code": 110007},
            {"action": "latency_ms", "endpoint": "positions", "ms": 1, "count": None},
        ],
    )
    assert len(answer["ids"]) == 2
    with pytest.raises(ccxt.InsufficientFunds):
        bybit.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None)
    assert [f["action"] for f in _admin(emu, "GET", "faults")] == ["latency_ms"]

    _admin(emu, "POST", "price", {"symbol": "BTCUSDT", "price": "70000"})
    bybit.create_order("BTC/USDT:USDT", "market", "buy", 0.01, None, {"clientOrderId": "adm"})
    [order] = _admin(emu, "GET", "orders?client_order_id=adm")
    assert order["avg_price"] == "70000" and order["status"] == "Filled"
    records = _admin(emu, "GET", "requests?path_contains=order/create")
    assert [r["outcome"] for r in records] == ["fault:ret_code:110007", "ok"]

    _admin(emu, "POST", "balance", {"amount": 5, "venue": "bybit"})
    assert emu.balance(account=KEY, venue="bybit") == 5
    _admin(emu, "POST", "reset")
    assert emu.orders() == [] and emu.faults() == [] and emu.requests() == []

    with pytest.raises(urllib.error.HTTPError) as info:
        _admin(emu, "POST", "faults", {"action": "explode"})
    assert info.value.code == 400


def test_fault_rule_validation():
    with pytest.raises(ValueError):
        FaultRule(action="nope")
    with pytest.raises(ValueError):
        FaultRule.from_dict({"action": "latency_ms", "millis": 5})
    with pytest.raises(ValueError):
        FaultRule(action="timeout_after_booking")  # neither ms nor close
    with pytest.raises(ValueError):
        FaultRule(action="ret_code")  # no code
    assert FaultRule(action="latency_ms", ms=1, symbol="eth/usdt:usdt").symbol == "ETHUSDT"


def test_emulator_refuses_non_loopback():
    with pytest.raises(ValueError):
        ExchangeEmulator(host="0.0.0.0")


def test_stop_releases_a_held_request():
    emu = ExchangeEmulator(accounts={KEY: SECRET}).start()
    emu.add_fault("latency_ms", "market/time", ms=30_000)
    done = threading.Event()

    def call():
        # The held request ends with a dropped connection, not an answer.
        with contextlib.suppress(OSError, http.client.HTTPException):
            urllib.request.urlopen(f"{emu.url}/v5/market/time", timeout=10).read()
        done.set()

    threading.Thread(target=call, daemon=True).start()
    time.sleep(0.2)
    t = time.monotonic()
    emu.stop()
    assert done.wait(3)
    assert time.monotonic() - t < 3


def test_redirect_adapter_validation_and_rewrite(emu):
    with pytest.raises(ValueError):
        RedirectAdapter("ftp://127.0.0.1:1")
    with pytest.raises(ValueError):
        RedirectAdapter("http://127.0.0.1:1/prefix")
    with pytest.raises(TypeError):
        redirect_exchange(object(), emu.url)
    ex = redirect_exchange(ccxt.bybit(), emu.url)
    assert ex.urls["api"]["public"].startswith("https://api.")  # untouched
    assert ex.fetch_time() > 0
    assert emu.requests()[0].host == "api.bybit.com"


def test_cli_serves_until_interrupted():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            "0",
            "--key",
            "cli-key",
            "--secret",
            "cli-secret-value",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        url = first.rsplit(" ", 1)[-1].strip()
        banner = [proc.stdout.readline() for _ in range(6)]
        assert any("cli-key" in line for line in banner)
        assert not any("cli-secret-value" in line for line in banner)
        with urllib.request.urlopen(f"{url}/__emulator/health", timeout=5) as resp:
            assert json.loads(resp.read())["ok"] is True
        ex = redirect_exchange(
            ccxt.bybit(
                {
                    "apiKey": "cli-key",
                    "secret": "cli-secret-value",
                    "options": {
                        "enableUnifiedAccount": True,
                        "enableUnifiedMargin": False,
                    },
                }
            ),
            url,
        )
        assert "USDT" in ex.fetch_balance()
        ex.session.close()  # no keep-alive connection left for the server to wait on
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "emulator stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_add_market_and_reset_restore_initial_state(emu, make_bybit):
    emu.add_market("PEPE", "0.00001", tick="0.00000001", qty_step="100")
    emu.set_price("BTCUSDT", 10)
    ex = make_bybit()
    assert ex.market("PEPE/USDT:USDT")["precision"]["amount"] == 100
    ex.create_order("PEPE/USDT:USDT", "market", "buy", 1_000_000, None)
    assert ex.fetch_position("PEPE/USDT:USDT")["contracts"] == 1_000_000
    emu.reset()
    assert emu.price("BTCUSDT") == 65000
    assert emu.orders() == []
    assert "PEPEUSDT" not in emu.engine.markets


def test_spot_market_buy_by_cost(emu, bybit):
    # Without marketUnit a spot market buy's qty is quote currency.
    bybit.create_market_buy_order_with_cost("BTC/USDT", 130, {"clientOrderId": "c"})
    assert "marketUnit" not in emu.requests("order/create")[0].params
    [order] = bybit.fetch_canceled_and_closed_orders("BTC/USDT", None, None, {"orderLinkId": "c"})
    assert order["cost"] == 130 and order["filled"] == 0.002
