"""Order updates through the venues' private WebSocket streams: real ccxt pro over real
sockets against the emulator's Bybit V5 private stream and Binance USD-M user data stream,
orders placed through the REST gateway, faults injected at the emulator."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from execution.exchanges import gateway_for
from execution.exchanges.streams import StreamManager
from execution.models import ExchangeAccount
from tests.conftest import wait_for

from .conftest import KEY, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

VENUES = {"bybit": "bybit", "binanceusdm": "binance"}  # our exchange id -> emulator venue


class Recorder:
    """A listener that keeps what it was told, and lets a test wait for it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.orders: list[tuple[int, object, float]] = []
        self.gaps: list[tuple[int, float]] = []

    def on_order(self, account_id, state) -> None:
        with self.cond:
            self.orders.append((account_id, state, time.monotonic()))
            self.cond.notify_all()

    def on_gap(self, account_id) -> None:
        with self.cond:
            self.gaps.append((account_id, time.monotonic()))
            self.cond.notify_all()

    def wait_order(self, account_id, cid, status, timeout=5.0, **expect):
        """The first update of order `cid` with `status` (and the `expect`ed fields)."""

        def match():
            for acc, state, at in self.orders:
                if acc == account_id and state.client_order_id == cid and state.status == status:
                    if all(getattr(state, k) == v for k, v in expect.items()):
                        return state, at
            return None

        with self.cond:
            found = self.cond.wait_for(match, timeout)
        assert found, (
            f"no {status} update of {cid} in {timeout} s; got {[(s.client_order_id, s.status, s.filled) for _, s, _ in self.orders]}"
        )
        return found

    def gap_count(self, account_id) -> int:
        with self.cond:
            return sum(1 for acc, _ in self.gaps if acc == account_id)

    def wait_gaps(self, account_id, count, timeout=10.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(1 for a, _ in self.gaps if a == account_id) >= count, timeout)
        assert ok, f"expected {count} gaps of account {account_id}, got {self.gap_count(account_id)}"


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def manager(recorder):
    mgr = StreamManager(
        keepalive_s=0.5, connect_timeout_s=5, backoff_min_s=0.05, backoff_max_s=0.5, listen_key_refresh_s=600
    )
    mgr.add_listener(recorder)
    yield mgr
    mgr.stop()


def ready(manager, account, timeout=10.0):
    return wait_for(
        lambda: manager.is_healthy(account.pk), timeout=timeout, message=f"the stream of {account.label} to be ready"
    )


def market_buy(account, cid, qty="0.01"):
    return gateway_for(account).create_order(
        symbol="BTC/USDT:USDT",
        side="buy",
        order_type="market",
        qty=Decimal(qty),
        price=None,
        reduce_only=False,
        client_order_id=cid,
    )


@pytest.fixture(params=list(VENUES))
def exchange(request):
    return request.param


@pytest.fixture
def account(emu, exchange):
    emu.set_price("BTCUSDT", "65000")
    return make_account(emu, exchange=exchange)


def test_a_market_order_placed_over_rest_is_reported_filled_by_the_stream(emu, account, manager, recorder):
    assert manager.ensure_watching(account)
    ready(manager, account)
    assert recorder.gap_count(account.pk) == 1  # just connected: the engine polls once
    sent = time.monotonic()
    market_buy(account, "tvstream1")
    state, at = recorder.wait_order(account.pk, "tvstream1", "filled")
    assert state.filled == Decimal("0.01")
    assert state.average == Decimal("65000")
    assert state.exchange_order_id
    fee_rate = Decimal("0.00055") if account.exchange == "bybit" else Decimal("0.0005")
    assert state.fee == Decimal("0.01") * 65000 * fee_rate and state.fee_currency == "USDT"
    assert at - sent < 2.0
    stream = emu.streams.connections(venue=VENUES[account.exchange], account=KEY)
    assert len(stream) == 1
    if account.exchange == "bybit":
        assert stream[0].topics == {"order"}
    # The stream and its listenKey went to the emulator under the production host names.
    hosts = {r.host for r in emu.requests(operation="stream_connect")}
    assert hosts == {"stream.bybit.com" if account.exchange == "bybit" else "fstream.binance.com"}


def test_partial_fills_arrive_as_they_happen(emu, account, manager, recorder):
    manager.ensure_watching(account)
    ready(manager, account)
    emu.add_fault("partial_fill", "create_order", fraction=0.5)
    market_buy(account, "tvpart1", qty="0.02")
    state, _ = recorder.wait_order(account.pk, "tvpart1", "partially_filled")
    assert state.filled == Decimal("0.01")
    emu.fill_rest(client_order_id="tvpart1")
    state, _ = recorder.wait_order(account.pk, "tvpart1", "filled")
    assert state.filled == Decimal("0.02")


def test_a_resting_limit_order_is_reported_open_then_filled_when_the_price_crosses(emu, account, manager, recorder):
    manager.ensure_watching(account)
    ready(manager, account)
    gateway_for(account).create_order(
        symbol="BTC/USDT:USDT",
        side="buy",
        order_type="limit",
        qty=Decimal("0.01"),
        price=Decimal("64000"),
        reduce_only=False,
        client_order_id="tvlimit1",
    )
    recorder.wait_order(account.pk, "tvlimit1", "open")
    emu.set_price("BTCUSDT", "63990")
    state, _ = recorder.wait_order(account.pk, "tvlimit1", "filled")
    assert state.average == Decimal("64000")


def test_a_dropped_connection_reconnects_resubscribes_signals_a_gap_and_delivers_later_fills(
    emu, account, manager, recorder
):
    manager.ensure_watching(account)
    ready(manager, account)
    venue = VENUES[account.exchange]
    assert emu.streams.drop(venue=venue, account=KEY) == 1
    # Down, then connected again: two gaps more.
    recorder.wait_gaps(account.pk, 3)
    ready(manager, account)
    assert len(emu.requests(operation="stream_connect")) == 2
    market_buy(account, "tvafter1")
    recorder.wait_order(account.pk, "tvafter1", "filled")
    health = manager.health(account.pk)
    assert health.reconnects >= 1 and health.state == "ready"


def test_an_update_lost_with_the_connection_is_covered_by_a_gap(emu, account, manager, recorder):
    """The venue cuts the connection right where it would push the fill: the fill never
    comes by the stream, but on_gap says so, after the order was sent."""
    manager.ensure_watching(account)
    ready(manager, account)
    emu.add_fault("stream_drop", venue=VENUES[account.exchange], when="before")
    sent = time.monotonic()
    market_buy(account, "tvlost1")
    recorder.wait_gaps(account.pk, 3)
    assert [at for acc, at in recorder.gaps if acc == account.pk][-1] > sent
    ready(manager, account)
    assert gateway_for(account).find_order(symbol="BTC/USDT:USDT", client_order_id="tvlost1").status == "filled"
    market_buy(account, "tvlost2")
    recorder.wait_order(account.pk, "tvlost2", "filled")


def test_a_silent_stream_shows_as_unhealthy_and_is_replaced(emu, account, manager, recorder):
    manager.ensure_watching(account)
    ready(manager, account)
    rule = emu.add_fault("stream_silent", venue=VENUES[account.exchange], count=None)
    wait_for(lambda: not manager.is_healthy(account.pk), timeout=5, message="the silent stream to be unhealthy")
    recorder.wait_gaps(account.pk, 2)  # connected, then silent
    emu.remove_fault(rule.id)
    ready(manager, account)
    market_buy(account, "tvsilent1")
    recorder.wait_order(account.pk, "tvsilent1", "filled")


def test_delayed_pushes_still_arrive_in_order(emu, account, manager, recorder):
    manager.ensure_watching(account)
    ready(manager, account)
    emu.add_fault("stream_delay_ms", venue=VENUES[account.exchange], ms=300, count=None)
    sent = time.monotonic()
    market_buy(account, "tvslow1")
    _, at = recorder.wait_order(account.pk, "tvslow1", "filled")
    assert at - sent >= 0.3


def test_bad_credentials_are_refused_by_the_venue_and_reported(emu, db, manager, recorder):
    emu.set_price("BTCUSDT", "65000")
    bybit = make_account(emu, exchange="bybit", label="bad-bybit")
    bybit.set_credentials(api_secret="not-the-secret")
    bybit.save()
    binance = make_account(emu, exchange="binanceusdm", label="bad-binance")
    binance.set_credentials(api_key="unknown-key")
    binance.save()
    for account in (bybit, binance):
        assert manager.ensure_watching(account)
    for account, words in ((bybit, "signature"), (binance, "-2015")):
        health = wait_for(
            lambda a=account: (h := manager.health(a.pk)) and h.state == "auth_failed" and h,
            timeout=10,
            message=f"{account.label} refused",
        )
        assert not health.healthy and not health.connected
        assert "AuthenticationError" in health.error and words in health.error
        assert "not-the-secret" not in health.error and "unknown-key" not in health.error
    assert not recorder.orders and not recorder.gaps
    bybit_connects = emu.requests(operation="stream_connect", venue="bybit")
    assert bybit_connects and all(r.account is None for r in bybit_connects)  # never authenticated


def test_binance_listen_key_is_kept_alive_past_its_validity(emu, db, recorder):
    emu.set_price("BTCUSDT", "65000")
    emu.streams.binance.keys.set_ttl(1.0)
    account = make_account(emu, exchange="binanceusdm")
    mgr = StreamManager(keepalive_s=0.5, backoff_min_s=0.05, backoff_max_s=0.5, listen_key_refresh_s=0.3)
    mgr.add_listener(recorder)
    try:
        mgr.ensure_watching(account)
        ready(mgr, account)
        # Keepalives for well past the key's one-second validity.
        wait_for(lambda: len(emu.requests(operation="listen_key_keepalive")) >= 6, timeout=10, message="keepalives")
        market_buy(account, "tvkept1")
        recorder.wait_order(account.pk, "tvkept1", "filled")
        assert recorder.gap_count(account.pk) == 1  # the first connect only
        assert len(emu.requests(operation="listen_key_create")) == 1
    finally:
        mgr.stop()


def test_binance_expired_listen_key_reconnects_with_a_new_one(emu, db, manager, recorder):
    emu.set_price("BTCUSDT", "65000")
    account = make_account(emu, exchange="binanceusdm")
    manager.ensure_watching(account)
    ready(manager, account)
    old_key = emu.streams.connections(venue="binance")[0].listen_key
    assert emu.streams.binance.keys.expire() == 1
    recorder.wait_gaps(account.pk, 3)  # connected, down (listenKeyExpired), connected
    ready(manager, account)
    live = [c for c in emu.streams.connections(venue="binance") if not c.ended]
    assert len(live) == 1 and live[0].listen_key != old_key
    market_buy(account, "tvrekey1")
    recorder.wait_order(account.pk, "tvrekey1", "filled")


def test_binance_refused_keepalive_reconnects_with_a_new_key(emu, db, recorder):
    """The key expires but its listenKeyExpired event is lost: the next keepalive is refused
    (-1125), which is enough to reconnect."""
    emu.set_price("BTCUSDT", "65000")
    account = make_account(emu, exchange="binanceusdm")
    mgr = StreamManager(keepalive_s=0.5, backoff_min_s=0.05, backoff_max_s=0.5, listen_key_refresh_s=0.5)
    mgr.add_listener(recorder)
    try:
        mgr.ensure_watching(account)
        ready(mgr, account)
        emu.add_fault("stream_silent", venue="binance", count=1)  # swallows the expiry event
        emu.streams.binance.keys.expire()
        recorder.wait_gaps(account.pk, 3)
        ready(mgr, account)
        refused = [r for r in emu.requests(operation="listen_key_keepalive") if r.code == -1125]
        assert refused
        market_buy(account, "tvrekey2")
        recorder.wait_order(account.pk, "tvrekey2", "filled")
    finally:
        mgr.stop()


def test_a_changed_account_restarts_its_stream_and_paper_accounts_have_none(emu, db, manager, recorder):
    emu.set_price("BTCUSDT", "65000")
    account = make_account(emu, exchange="bybit")
    assert manager.ensure_watching(account)
    ready(manager, account)
    assert manager.ensure_watching(account)  # unchanged: nothing new
    assert len(emu.requests(operation="stream_connect")) == 1
    account.label = "renamed"
    account.save()
    assert manager.ensure_watching(account)
    wait_for(lambda: len(emu.requests(operation="stream_connect")) == 2, timeout=10, message="a new connection")
    ready(manager, account)
    paper = ExchangeAccount.objects.create(label="paper", exchange="bybit", mode=ExchangeAccount.Mode.PAPER)
    assert not manager.ensure_watching(paper)
