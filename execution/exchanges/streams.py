"""Order updates pushed by each venue's private WebSocket stream, per exchange account.

One :class:`StreamManager` per process runs one asyncio event loop in a daemon thread
(``tvtrader-streams``). For each watched account it keeps one ccxt pro client and one
connection (Bybit V5 ``/v5/private`` topic ``order``; Binance USD-M user data stream),
follows ``watch_orders`` and tells the registered listeners about every order update in
our own :class:`~execution.exchanges.base.OrderState` (base-coin quantities, as the REST
gateway returns them). Connections are re-established with capped, jittered back-off and
resubscribed; a testnet account with a base URL has its stream (and listenKey requests)
sent there, like its REST traffic (:func:`.redirect.redirect_session`).

Interface::

    from execution.exchanges.streams import start_streams, stream_manager, stop_streams

    class Follower:                                   # any object with these two methods
        def on_order(self, account_id: int, state: OrderState) -> None: ...
        def on_gap(self, account_id: int) -> None: ...

    manager = start_streams(accounts, listeners=[follower])   # worker start-up (idempotent)
    manager.ensure_watching(account)   # idempotent, cheap: call it whenever an account is used;
                                       # False = no stream for it (paper, unsupported venue),
                                       # follow its orders by polling
    manager.health(account_id)         # StreamHealth: state, healthy, last_message_at, error...
    manager.is_healthy(account_id)     # False → updates may not arrive: poll
    stop_streams()                     # worker shutdown

``on_order(account_id, state)`` comes for the changes the venue reports (booked, fills,
cancel); changes that arrive together come as one update with the latest state (fills are
cumulative). An update may repeat what the engine already learnt by its own poll: apply
it idempotently (by client order id; never let a filled quantity go backwards).

``on_gap(account_id)`` means updates of that account may have been missed: the stream just
(re)connected and subscribed (updates before that were not seen), went down, or fell silent
(no frame, not even a pong, for ``stale_after_s``). Poll the account's open orders once;
while ``is_healthy(account_id)`` is False, keep following its orders by polling.

Listeners are called from the stream thread: they must be cheap and never block (hand
the work to a queue or a thread); an exception in a listener is logged and ignored.
Start the manager in the process that uses it (after any fork: a thread does not survive
one).

A silent-but-connected stream that still answers pings cannot be told from an idle one;
the engine should still poll an order the stream has not reported within a deadline.
Binance listenKeys are created on every (re)connect (the venue returns the active key,
extended) and kept alive here every ``listen_key_refresh_s``; a key the venue no longer
knows (keepalive refused, ``listenKeyExpired`` pushed) reconnects with a new one. The key
is never deleted on shutdown: other processes on the same account share it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import ccxt
import ccxt.pro

from .base import OrderState
from .ccxt_gateway import _order_state, contract_size

logger = logging.getLogger("tvtrader.streams")

__all__ = [
    "STREAM_EXCHANGES",
    "StreamHealth",
    "StreamListener",
    "StreamManager",
    "start_streams",
    "stop_streams",
    "stream_manager",
]

#: Venues whose private stream is followed (and emulated). Others are polled.
STREAM_EXCHANGES = frozenset({"bybit", "binanceusdm"})

_AUTH_ERRORS = (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)


class StreamListener(Protocol):
    def on_order(self, account_id: int, state: OrderState) -> None: ...

    def on_gap(self, account_id: int) -> None: ...


@dataclass(frozen=True)
class StreamHealth:
    """One account's stream as of now. ``state``: starting, connecting, ready, down,
    auth_failed (credentials refused; retried slowly), stopped."""

    account_id: int
    exchange: str
    state: str
    connected: bool  # connected and subscribed (state "ready")
    healthy: bool  # connected and a frame (update or pong) seen within stale_after_s
    connected_since: float | None  # time.time() when it last became ready
    last_message_at: float | None  # time.time() of the last frame received
    error: str  # the last failure, credentials redacted
    reconnects: int
    gaps: int


class ListenKeyGone(Exception):
    """The venue no longer serves this user data stream's listenKey."""


class StreamNotReady(Exception):
    """Connected, but the subscription was not confirmed in time."""


def _redact(text: str, credentials: dict[str, str]) -> str:
    for value in credentials.values():
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text[:300]


class _Watcher:
    """One account: its ccxt pro client and the task that follows its stream."""

    def __init__(self, manager: StreamManager, account_id: int, gateway: Any, label: str, version: object) -> None:
        self.manager = manager
        self.account_id = account_id
        self.gateway = gateway
        self.exchange_id: str = gateway.exchange_id
        self.label = label
        self.version = version
        self.state = "starting"
        self.error = ""
        self.connected_since: float | None = None
        self.reconnects = 0
        self.gaps = 0
        self.stale = False
        self.task: asyncio.Task | None = None
        self.ex: Any = None
        self.session: Any = None
        self.ready: asyncio.Event | None = None
        self.backoff = manager.backoff_min_s
        self._last_seen_ms = 0
        self._last_logged: tuple[str, str] = ("", "")
        self._credentials: dict[str, str] = {}

    # --- health --------------------------------------------------------------------
    def last_message_ms(self) -> int | None:
        ex = self.ex
        if ex is not None:
            for client in list((ex.clients or {}).values()):
                stamp = getattr(client, "last_message_at", None)
                if stamp and stamp > self._last_seen_ms:
                    self._last_seen_ms = stamp
        return self._last_seen_ms or None

    def health(self) -> StreamHealth:
        last = self.last_message_ms()
        now_ms = time.time() * 1000
        # A user data stream may say nothing before its first pong: count from the connect.
        heard = max(last or 0, (self.connected_since or 0) * 1000)
        fresh = now_ms - heard <= self.manager.stale_after_s * 1000
        return StreamHealth(
            account_id=self.account_id,
            exchange=self.exchange_id,
            state=self.state,
            connected=self.state == "ready",
            healthy=self.state == "ready" and fresh,
            connected_since=self.connected_since,
            last_message_at=last / 1000 if last else None,
            error=self.error,
            reconnects=self.reconnects,
            gaps=self.gaps,
        )

    # --- the ccxt pro client -------------------------------------------------------
    async def _build(self) -> None:
        markets, currencies = await asyncio.to_thread(self.gateway.loaded_markets)
        config = self.gateway.client_config()
        self._credentials = {k: config.get(k) or "" for k in ("apiKey", "secret", "password")}
        options = dict(config.get("options") or {})
        # The stream needs no REST snapshot of positions; and listenKey keepalives are
        # ours (one per interval, whatever the reconnects), so ccxt's timer never fires.
        options["watchPositions"] = {"fetchPositionsSnapshot": False}
        options["listenKeyRefreshRate"] = 10**10
        config["options"] = options
        config["streaming"] = {"keepAlive": int(self.manager.keepalive_s * 1000)}
        base_url = getattr(self.gateway, "_base_url", "")
        testnet = self.gateway.mode == "testnet"
        if testnet and base_url:
            from .redirect import redirect_session

            self.session = redirect_session(base_url)
            config["session"] = self.session
        ex = getattr(ccxt.pro, self.exchange_id)(config)
        if testnet and not base_url:
            ex.set_sandbox_mode(True)
        ex.set_markets(markets, currencies or None)
        self._observe(ex)
        self.ex = ex

    def _observe(self, ex: Any) -> None:
        """Look at the messages ccxt handles (it stays in charge of them): a confirmed
        subscription makes the stream ready; a listenKeyExpired event, which ccxt
        ignores, ends the connection."""
        handle_message, on_connected = ex.handle_message, ex.on_connected
        binance = self.exchange_id == "binanceusdm"

        def observed_message(client: Any, message: Any) -> Any:
            result = handle_message(client, message)
            if isinstance(message, dict):
                if not binance and message.get("op") == "subscribe" and message.get("success") is True:
                    if self.ready is not None:
                        self.ready.set()
                elif binance and message.get("e") == "listenKeyExpired":
                    self._end_connections(ListenKeyGone("the venue expired the listenKey"))
            return result

        def observed_connect(client: Any, message: Any = None) -> Any:
            result = on_connected(client, message)
            # A user data stream serves its account from the first byte.
            if binance and self.ready is not None:
                self.ready.set()
            return result

        ex.handle_message = observed_message
        ex.on_connected = observed_connect

    def _end_connections(self, error: Exception) -> None:
        for client in list((self.ex.clients or {}).values()):
            client.reject(error)

    async def _discard_connections(self) -> None:
        if self.ex is not None and self.ex.clients:
            await self.ex.close_ws_clients()

    # --- following -----------------------------------------------------------------
    async def run(self) -> None:
        mgr = self.manager
        try:
            while True:
                try:
                    await self._follow()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)
                delay = mgr.backoff_max_s if self.state == "auth_failed" else self.backoff
                self.backoff = min(self.backoff * 2, mgr.backoff_max_s)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                self.reconnects += 1
        finally:
            self.state = "stopped"

    def _failed(self, exc: Exception) -> None:
        was_ready = self.state == "ready"
        auth = isinstance(exc, _AUTH_ERRORS)
        self.state = "auth_failed" if auth else "down"
        self.error = _redact(f"{type(exc).__name__}: {exc}", self._credentials)
        self.connected_since = None
        # Once per distinct failure, not at every retry of a long outage.
        if (self.state, self.error) != self._last_logged:
            self._last_logged = (self.state, self.error)
            log = logger.error if auth else logger.warning
            event = "stream_auth_failed" if auth else "stream_down"
            log("event=%s account=%s exchange=%s error=%s", event, self.label, self.exchange_id, self.error)
        if was_ready:
            self.manager._gap(self, "down")

    async def _follow(self) -> None:
        mgr = self.manager
        if self.ex is None:
            await self._build()
        else:
            await self._discard_connections()
        ex = self.ex
        if self.exchange_id == "binanceusdm":
            # POST a listenKey on every connect: the venue answers the active key, extended,
            # or a new one if it expired meanwhile.
            for bucket in ex.options.values():
                if isinstance(bucket, dict) and "listenKey" in bucket:
                    bucket.update(listenKey=None, lastAuthenticatedTime=0)
        self.ready = asyncio.Event()
        self.state = "connecting"
        watch = asyncio.ensure_future(ex.watch_orders())
        ready = asyncio.ensure_future(self.ready.wait())
        keepalive = None
        try:
            deadline = time.monotonic() + mgr.connect_timeout_s
            while not self.ready.is_set():
                remaining = deadline - time.monotonic()
                done, _ = await asyncio.wait({watch, ready}, timeout=max(0.0, remaining), return_when="FIRST_COMPLETED")
                if not done:
                    raise StreamNotReady(f"subscription not confirmed within {mgr.connect_timeout_s:g} s")
                if watch in done:
                    self._deliver(watch.result())
                    watch = asyncio.ensure_future(ex.watch_orders())
            self.state = "ready"
            self.stale = False
            self.error = ""
            self._last_logged = ("", "")
            self.connected_since = time.time()
            self.backoff = mgr.backoff_min_s
            logger.info("event=stream_ready account=%s exchange=%s", self.label, self.exchange_id)
            mgr._gap(self, "connected")
            if self.exchange_id == "binanceusdm":
                keepalive = asyncio.ensure_future(self._keep_listen_key())
            while True:
                self._deliver(await watch)
                watch = asyncio.ensure_future(ex.watch_orders())
        finally:
            for task in (watch, ready, keepalive):
                if task is not None and not task.done():
                    task.cancel()

    def _deliver(self, orders: Iterable[dict]) -> None:
        markets = self.ex.markets or {}
        for order in orders:
            size = contract_size(markets.get(order.get("symbol")) or {})
            self.manager._emit(self.account_id, _order_state(order, "", size))

    async def _keep_listen_key(self) -> None:
        while True:
            await asyncio.sleep(self.manager.listen_key_refresh_s)
            try:
                await self.ex.fapiPrivatePutListenKey()
            except Exception as exc:
                if "-1125" in str(exc):
                    self._end_connections(ListenKeyGone("the venue no longer knows the listenKey"))
                    return
                # Still valid for up to an hour: try again at the next interval.
                logger.warning(
                    "event=stream_keepalive_failed account=%s error=%s",
                    self.label,
                    _redact(str(exc), self._credentials),
                )

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        if self.ex is not None:
            try:
                await self.ex.close()
            except Exception:
                logger.debug("stream client of %s did not close cleanly", self.label, exc_info=True)
        if self.session is not None:
            await self.session.close()
        self.state = "stopped"


class StreamManager:
    """Per-process owner of the stream thread, the accounts' streams and the listeners."""

    def __init__(
        self,
        *,
        keepalive_s: float = 5.0,
        stale_after_s: float | None = None,
        connect_timeout_s: float = 10.0,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 30.0,
        listen_key_refresh_s: float = 1200.0,
    ) -> None:
        self.keepalive_s = keepalive_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else 2.5 * keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.listen_key_refresh_s = listen_key_refresh_s
        self._listeners: list[StreamListener] = []
        self._watchers: dict[int, _Watcher] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._monitor_task: asyncio.Task | None = None

    # --- listeners -----------------------------------------------------------------
    def add_listener(self, listener: StreamListener) -> None:
        with self._lock:
            if listener not in self._listeners:
                self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: StreamListener) -> None:
        with self._lock:
            self._listeners = [x for x in self._listeners if x is not listener]

    def _emit(self, account_id: int, state: OrderState) -> None:
        for listener in self._listeners:
            try:
                listener.on_order(account_id, state)
            except Exception:
                logger.exception("event=stream_listener_failed account_id=%s", account_id)

    def _gap(self, watcher: _Watcher, reason: str) -> None:
        watcher.gaps += 1
        logger.info("event=stream_gap account=%s reason=%s", watcher.label, reason)
        for listener in self._listeners:
            try:
                listener.on_gap(watcher.account_id)
            except Exception:
                logger.exception("event=stream_listener_failed account_id=%s", watcher.account_id)

    # --- lifecycle -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> StreamManager:
        """Start the stream thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._monitor_task = loop.create_task(self._monitor())
                loop.call_soon(started.set)
                loop.run_forever()

            self._loop = loop
            self._thread = threading.Thread(target=run, name="tvtrader-streams", daemon=True)
            self._thread.start()
        started.wait(5)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every stream and end the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            watchers = list(self._watchers.values())
            self._watchers.clear()
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._monitor_task is not None:
                self._monitor_task.cancel()
            await asyncio.gather(*(w.close() for w in watchers), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        except Exception:
            logger.warning("event=streams_stop_incomplete", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    # --- accounts ------------------------------------------------------------------
    def ensure_watching(self, account: Any) -> bool:
        """Follow this ExchangeAccount's stream if it has one (idempotent and cheap; a
        changed account row - credentials, mode, base URL - restarts its stream).
        Returns False when its orders must be followed by polling only."""
        if account.mode == "paper" or account.exchange not in STREAM_EXCHANGES or not account.has_credentials:
            return False
        version = (account.updated_at, account.mode, account.base_url)
        current = self._watchers.get(account.pk)
        if current is not None and current.version == version:
            return True
        from . import GatewayError, gateway_for

        try:
            gateway = gateway_for(account)
        except GatewayError as exc:
            logger.warning("event=stream_not_started account=%s error=%s", account.label, exc)
            return False
        return self.watch(account.pk, gateway, label=account.label, version=version)

    def watch(self, account_id: int, gateway: Any, *, label: str = "", version: object = None) -> bool:
        """Follow the stream of ``gateway``'s account (a CcxtGateway); ``version`` tells a
        changed account from the one already watched. Starts the thread if needed."""
        if getattr(gateway, "exchange_id", None) not in STREAM_EXCHANGES:
            return False
        self.start()
        with self._lock:
            loop = self._loop
            current = self._watchers.get(account_id)
            if current is not None and current.version == version:
                return True
            watcher = _Watcher(self, account_id, gateway, label or str(account_id), version)
            self._watchers[account_id] = watcher

        def begin() -> None:
            if current is not None:
                asyncio.ensure_future(current.close())
            watcher.task = asyncio.ensure_future(watcher.run())

        loop.call_soon_threadsafe(begin)
        return True

    def unwatch(self, account_id: int) -> None:
        with self._lock:
            watcher = self._watchers.pop(account_id, None)
            loop = self._loop
        if watcher is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(watcher.close(), loop)

    def health(self, account_id: int) -> StreamHealth | None:
        watcher = self._watchers.get(account_id)
        return watcher.health() if watcher is not None else None

    def is_healthy(self, account_id: int) -> bool:
        health = self.health(account_id)
        return health is not None and health.healthy

    def all_health(self) -> list[StreamHealth]:
        return [w.health() for w in list(self._watchers.values())]

    async def _monitor(self) -> None:
        """A ready stream that has received nothing for stale_after_s may be losing
        updates: tell the listeners (ccxt's own ping watchdog then reconnects it)."""
        while True:
            await asyncio.sleep(min(1.0, self.stale_after_s / 4))
            for watcher in list(self._watchers.values()):
                if watcher.state != "ready":
                    continue
                healthy = watcher.health().healthy
                if not healthy and not watcher.stale:
                    watcher.stale = True
                    logger.warning("event=stream_silent account=%s", watcher.label)
                    self._gap(watcher, "silent")
                elif healthy and watcher.stale:
                    watcher.stale = False
                    self._gap(watcher, "resumed")


_manager: StreamManager | None = None
_manager_lock = threading.Lock()


def stream_manager() -> StreamManager:
    """This process's stream manager (created on first use, not started)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = StreamManager()
        return _manager


def start_streams(accounts: Iterable[Any] = (), listeners: Iterable[StreamListener] = ()) -> StreamManager:
    """Worker start-up: register listeners, start the thread, watch these accounts."""
    manager = stream_manager()
    for listener in listeners:
        manager.add_listener(listener)
    manager.start()
    for account in accounts:
        manager.ensure_watching(account)
    return manager


def stop_streams(timeout: float = 5.0) -> None:
    """Worker shutdown: close every stream."""
    if _manager is not None:
        _manager.stop(timeout)
