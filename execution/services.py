"""Domain verbs for execution: a signal becomes orders at the exchange, exactly once and in
order.

The flow for one signal (`signal_execute`):
1. Claim it with a conditional update (a redelivered or duplicated task does nothing), only
   when no earlier signal of the same strategy and ticker is still pending — so a close
   that arrived first is never overtaken by the entry behind it.
2. Re-check the kill switches, plan the legs, and commit one `Order` row per leg with its
   deterministic client order id (unique per account in the database).
3. Only then talk to the exchange, outside any transaction. An ambiguous failure (timeout,
   5xx, dropped connection) makes the order UNKNOWN; it is resolved by looking it up by its
   client order id, and resent (same id) only once the venue has kept saying "not found"
   past a grace period. Definitive rejections fail the order once, with the venue's reason.
4. Follow each acknowledged order to a final state, recording fills as they arrive, and
   cancelling a limit order left open past the strategy's timeout.
5. Finish the signal and wake the next one waiting behind it.
A worker that dies mid-way leaves the signal PROCESSING with a lease; when the lease
expires the sweeper re-queues it and the next run resumes each order where it stood.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from signals.models import Signal
from strategies.models import Strategy, TradingControl

from . import hotpath
from .exchanges import (
    Gateway,
    GatewayError,
    Misconfigured,
    OrderNotFound,
    OrderRejected,
    OrderState,
    SendAborted,
    gateway_for,
    tradingview_to_ccxt,
)
from .models import ExchangeAccount, Fill, Order, Position
from .planner import NothingToDo, PlanError, plan_legs
from .ratelimit import order_slot_acquire

logger = logging.getLogger("tvtrader.execution")

MAX_SUBMITS = 3
FOLLOW_MAX_SECONDS = 120
RESOLVE_BACKOFF = (0.1, 0.25, 0.5, 1, 1, 2, 2, 3, 3, 5)
# The first look at an acknowledged order waits a little: in a burst, every thread polling
# at once would hold the interpreter while other alerts' orders are still to be sent.
FOLLOW_BACKOFF = (0.15, 0.15, 0.2, 0.3, 0.5, 1, 1, 2)
# How long a follow-up waits for this process's outgoing orders before it polls anyway.
FOLLOW_YIELD_MAX_SECONDS = 2.0
SEND_QUIET_SECONDS = 0.02
# A follower spends at most this long on one signal before putting it at the back of the
# followers' queue, so a few resting limit orders cannot keep every other signal waiting.
FOLLOW_SLICE_SECONDS = 3.0
BPS = Decimal("10000")
_STATUS_MAP = {
    "open": Order.Status.OPEN,
    "partially_filled": Order.Status.PARTIALLY_FILLED,
    "filled": Order.Status.FILLED,
    "cancelled": Order.Status.CANCELLED,
    "rejected": Order.Status.REJECTED,
}


_install_tag_cache: str | None = None


def _install_tag() -> str:
    """Six hex characters made when this database was created: two installations (or a
    database reset) sharing one exchange account never collide on client order ids."""
    global _install_tag_cache
    if _install_tag_cache is None:
        _install_tag_cache = TradingControl.current().install_id
    return _install_tag_cache


def client_order_id_for(*, signal_id: int, leg: int) -> str:
    """Deterministic: `tv` + install tag + signal id (base 36) + `l` + leg. Letters and
    digits only, at most 32 characters: valid on Bybit, Binance, OKX and Bitget."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    n, encoded = signal_id, ""
    while True:
        n, r = divmod(n, 36)
        encoded = digits[r] + encoded
        if n == 0:
            break
    return f"tv{_install_tag()}{encoded}l{leg}"


def _log(signal: Signal, event: str, **fields: Any) -> str:
    extra = " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in fields.items())
    return f"event={event} strategy={signal.strategy_key or '-'} signal={signal.pk} {extra}".rstrip()


# --- claiming ----------------------------------------------------------------------------


def _lease(seconds: int | None = None):
    return timezone.now() + timedelta(seconds=seconds or settings.SIGNAL_LEASE_SECONDS)


class RetryLater(Exception):
    """Nothing was sent and the cause is temporary (e.g. markets could not be loaded): keep
    the signal for the sweeper to bring back shortly."""


class LeaseLost(SendAborted):
    """Another worker took this signal over (our lease ran out): stop without touching it."""


def _owned(signal: Signal):
    """The signal, only while this worker still owns it. `attempts` counts claims, so the
    value read right after our claim is a fencing token: a worker whose lease ran out and
    was taken over can no longer renew, send or finish anything."""
    return Signal.objects.filter(pk=signal.pk, status=Signal.Status.PROCESSING, attempts=signal.attempts)


def _extend_lease(signal: Signal, seconds: int | None = None, *, force: bool = False) -> None:
    """Renew this worker's lease (at most every few seconds: the lease is long, and every
    statement on the way to the exchange is latency). Raises LeaseLost if taken over."""
    now = time.monotonic()
    if not force and seconds is None and now - getattr(signal, "_lease_renewed", 0.0) < 5.0:
        return
    if not _owned(signal).update(lease_until=_lease(seconds)):
        raise LeaseLost(signal.pk)
    signal._lease_renewed = now


def signal_claim(signal: Signal) -> bool:
    """Take ownership of a signal, or return False (done, owned by another worker, or an
    earlier signal for the same strategy and market still has to run first). On success
    `signal.attempts` is this run's fencing token (see `_owned`)."""
    now = timezone.now()
    market_tickers = None
    if signal.action != "close_all" and not signal.strategy.symbol_override:
        # Same market (with or without TradingView's .P), or a close_all that covers it. A
        # close_all, and every signal of a strategy pinned to one symbol, waits for all.
        key = _market_key(signal.ticker)
        market_tickers = (key, f"{key}.P")
    lease_until = now + timedelta(seconds=settings.SIGNAL_LEASE_SECONDS)
    claimed = hotpath.signal_claim_update(
        signal=signal, now=now, lease_until=lease_until, market_tickers=market_tickers
    )
    if claimed:
        signal.status, signal.attempts, signal.lease_until = Signal.Status.PROCESSING, signal.attempts + 1, lease_until
        signal.started_at = signal.started_at or now
        signal._lease_renewed = signal._claimed_mono = time.monotonic()
    return bool(claimed)


def _halt_reason(
    signal: Signal, strategy: Strategy, account: ExchangeAccount | None, global_halted: bool | None = None
) -> str:
    if signal.origin == Signal.Origin.FLATTEN and signal.action == "close_all":
        return ""  # an operator's flatten is what a halted strategy wants
    if TradingControl.is_halted() if global_halted is None else global_halted:
        return "blocked at execution: the global kill switch is engaged"
    if strategy.halted:
        return "blocked at execution: this strategy's kill switch is engaged"
    if not strategy.enabled:
        return "blocked at execution: this strategy is disabled"
    if account is not None and account.halted:
        return f"blocked at execution: the kill switch of account {account.label} is engaged"
    return ""


# --- the engine --------------------------------------------------------------------------


def _load_for_execution(signal_id: int, claim_at=None):
    """The signal with its strategy, account and the global switch (the body and payload
    are for people and are not read here). Django's per-task connection health check would
    add a `SELECT 1` round trip before this read; instead a kept connection found dead (a
    PostgreSQL restart) is replaced and the read, which changes nothing, tried once more."""
    kept = connection.connection is not None
    connection.health_check_done = True

    def attempt():
        if claim_at is None:
            return hotpath.signal_for_execution(signal_id)
        return hotpath.signal_load_and_claim(signal_id=signal_id, now=claim_at[0], lease_until=claim_at[1])

    try:
        return attempt()
    except DatabaseError:
        if not kept or connection.is_usable():
            raise
        # A dead connection never ran the statement; if it did and only the reply was lost,
        # the claim is in place and the retry finds it taken: the lease runs out and the
        # sweeper resumes the signal (a delay, never a second order).
        logger.warning("event=worker_db_reconnect reason=kept connection found dead signal=%s", signal_id)
        connection.close()
        return attempt()


# --- send first, follow later ----------------------------------------------------------
# Following an acknowledged order (polls, fills, positions) costs several times the Python of
# sending it, and a worker's pool threads share one interpreter lock: in a burst the
# follow-ups of the first orders used to delay the sends of the last ones by seconds, and
# held the pool threads the later alerts needed. Now, in the worker, a signal's run sends its
# orders on a pool thread and hands the following to a small pool of follower threads in the
# same process (same run, same lease and fencing token), freeing the pool thread at once.
# Followers wait, briefly, while this process still has orders on their way out.

_sends_lock = threading.Lock()
_sends_in_progress = 0
_last_send_activity = 0.0
_followers: ThreadPoolExecutor | None = None
_stopping = threading.Event()


def followers_stop() -> None:
    """The worker is shutting down: followers poll once more, then release their signals'
    leases, so the next worker resumes them at once instead of after the lease runs out."""
    _stopping.set()


class _SendPhase:
    """Counts this process's signal runs that may still send an order."""

    def __init__(self) -> None:
        self.open = False

    def __enter__(self) -> _SendPhase:
        global _sends_in_progress, _last_send_activity
        with _sends_lock:
            _sends_in_progress += 1
            _last_send_activity = time.monotonic()
        self.open = True
        return self

    def end(self) -> None:
        global _sends_in_progress, _last_send_activity
        if self.open:
            self.open = False
            with _sends_lock:
                _sends_in_progress -= 1
                _last_send_activity = time.monotonic()

    def __exit__(self, *_exc) -> None:
        self.end()


def _sends_first(max_wait: float = FOLLOW_YIELD_MAX_SECONDS) -> None:
    """Wait (bounded) while this process has orders on their way out, and a little after the
    last one (the next alert of a burst is usually a few milliseconds behind)."""
    deadline = time.monotonic() + max_wait
    while (
        time.monotonic() < deadline
        and not _stopping.is_set()
        and (_sends_in_progress > 0 or time.monotonic() - _last_send_activity < SEND_QUIET_SECONDS)
    ):
        time.sleep(0.005)


def _send_phase_end(signal: Signal) -> None:
    phase = getattr(signal, "_send_phase", None)
    if phase is not None:
        phase.end()


def _followers_pool() -> ThreadPoolExecutor:
    global _followers
    with _sends_lock:
        if _followers is None:
            _followers = ThreadPoolExecutor(
                max_workers=settings.EXECUTION_FOLLOW_THREADS, thread_name_prefix="tvtrader-follow"
            )
    return _followers


def _follow_later(signal: Signal, orders: list[Order]) -> None:
    """Hand this run over to a follower thread: it keeps the lease and the fencing token, so
    nothing else can act on the signal meanwhile; if the process dies, the lease runs out
    and the sweeper resumes the signal as it would any interrupted run."""
    _send_phase_end(signal)
    _extend_lease(signal)  # only if the last renewal is a while ago: the claim set a fresh lease
    signal._handed_off = True
    _followers_pool().submit(
        _follow_run,
        signal.pk,
        signal.attempts,
        getattr(signal, "_claimed_mono", 0.0),
        getattr(signal, "_pending_reply", None),
        getattr(signal, "_lease_renewed", 0.0),
    )
    logger.info(_log(signal, "signal_follow_later", orders=",".join(f"{o.client_order_id}:{o.status}" for o in orders)))


def _follow_run(
    signal_id: int, attempts: int, claimed_mono: float, reply: tuple | None, lease_renewed: float = 0.0
) -> None:
    from django.db import close_old_connections

    # Nothing a follower does is urgent next to an order still on its way out: during a burst
    # it starts (loading the signal, recording the acknowledgement) only once the sends pause.
    _sends_first()
    close_old_connections()  # what a task start does: a follower thread lives long
    try:
        signal = _load_for_execution(signal_id)
        if signal is None or signal.is_terminal:
            return
        # This run's fencing token, not whatever the row says now: if another worker took the
        # signal over meanwhile, every update below refuses and the follower stops.
        signal.attempts = attempts
        signal._first_run, signal._claimed_mono, signal._lease_renewed = False, claimed_mono, lease_renewed
        signal._on_follower = True
        if reply is not None:
            # The exchange's acknowledgement of the order the pool thread sent: recorded here,
            # off the sending path. Until then the order reads SUBMITTING, which a resumed
            # run (after a crash) resolves by looking it up, never by resending blindly.
            order, state, sent_at, acked_at = reply
            account = signal.strategy.account
            _record_sent(signal, order, sent_at)
            order_apply_state(
                order=order,
                state=state,
                book_positions=account.is_paper or not signal.is_test,
                reply=True,
                acked_at=acked_at,
            )
        _execute_claimed(signal)
        if getattr(signal, "_follow_again", False) and not _stopping.is_set():
            _followers_pool().submit(_follow_run, signal_id, attempts, claimed_mono, None, signal._lease_renewed)
    except Exception:
        logger.exception("event=follow_failed signal=%s", signal_id)


def signal_execute(*, signal_id: int, follow_in_background: bool = False) -> None:
    """Run a signal: claim it, plan, send, follow the orders to a final state. The worker
    passes `follow_in_background` (see "send first, follow later" above); called directly,
    the run follows its orders before returning."""
    with _SendPhase() as phase:
        _signal_execute(signal_id, phase, follow_in_background)


def _signal_execute(signal_id: int, phase: _SendPhase, follow_in_background: bool) -> None:
    if connection.vendor == "postgresql":
        # Claim and load in one round trip (the claim's rules are those of signal_claim).
        now = timezone.now()
        lease_until = now + timedelta(seconds=settings.SIGNAL_LEASE_SECONDS)
        signal, claimed = _load_for_execution(signal_id, claim_at=(now, lease_until))
        if signal is None or signal.is_terminal or signal.strategy_id is None:
            return
        first_run = signal.attempts == 0
        if not first_run:
            phase.end()  # a resumed run follows (a resend after "never received" is rare)
        if not claimed:
            logger.info(_log(signal, "signal_not_claimed", status=signal.status))
            return
        signal.status, signal.attempts, signal.lease_until = Signal.Status.PROCESSING, signal.attempts + 1, lease_until
        signal.started_at = signal.started_at or now
        signal._lease_renewed = signal._claimed_mono = time.monotonic()
    else:
        signal = _load_for_execution(signal_id)
        if signal is None or signal.is_terminal or signal.strategy_id is None:
            return
        first_run = signal.attempts == 0
        if not first_run:
            phase.end()
        if not signal_claim(signal):
            logger.info(_log(signal, "signal_not_claimed", status=signal.status))
            return
    signal._first_run = first_run
    signal._send_phase = phase
    signal._follow_in_background = follow_in_background
    _execute_claimed(signal)


def _execute_claimed(signal: Signal) -> None:
    try:
        _run(signal)
    except LeaseLost:
        logger.warning(_log(signal, "signal_lease_lost", note="another worker owns it now; stopping"))
        return
    except RetryLater as exc:
        _owned(signal).update(lease_until=_lease(15))
        logger.warning(_log(signal, "signal_retry_later", reason=str(exc)[:200]))
        return
    except Exception as exc:
        logger.exception(_log(signal, "signal_execution_error", error=type(exc).__name__))
        in_flight = signal.orders.exclude(status__in=[*Order.TERMINAL_STATUSES, Order.Status.PENDING]).exists()
        if in_flight:
            # An order may be at the exchange: keep the signal for the sweeper to resume.
            _owned(signal).update(lease_until=_lease(15))
        else:
            _finish(signal, Signal.Status.FAILED, f"internal error during execution: {type(exc).__name__}: {exc}")
    finally:
        if not getattr(signal, "_handed_off", False):  # else the follower's run ends it
            signal.refresh_from_db()
            if signal.is_terminal:
                _wake_next(signal)


def _finish(signal: Signal, status: str, reason: str = "") -> None:
    now = timezone.now()
    updates: dict[str, Any] = {"status": status, "finished_at": now, "lease_until": None}
    if reason:
        updates["reason"] = reason[:2000]
    if not _owned(signal).update(**updates):
        logger.warning(_log(signal, "signal_finish_skipped", note="not owned by this worker any more"))
        return
    signal.refresh_from_db()
    level = logging.INFO if status in (Signal.Status.EXECUTED, Signal.Status.SKIPPED) else logging.WARNING
    logger.log(level, _log(signal, f"signal_{status}", reason=reason or "-"))
    _notify_finished(signal)


def _notify_finished(signal: Signal) -> None:
    """Tell the trader (delivered from the notifications queue; never affects trading)."""
    try:
        from tvtrader.ops.notifications import notify_signal_outcome

        notify_signal_outcome(signal=signal)
    except Exception:
        logger.exception(_log(signal, "notification_failed"))


def _market_key(ticker: str) -> str:
    """Tickers that reach the same market order against each other: BTCUSDT and
    BTCUSDT.P on a perpetual account are one market."""
    ticker = ticker.upper()
    return ticker[:-2] if ticker.endswith(".P") else ticker


def _wake_next(signal: Signal) -> None:
    """Queue the first waiting signal of each market of this strategy (waking one that
    still has to wait is harmless: it just waits)."""
    from signals.services import signal_enqueue

    waiting = (
        Signal.objects.filter(strategy_id=signal.strategy_id, id__gt=signal.pk, status=Signal.Status.ACCEPTED)
        .order_by("id")
        .values_list("pk", "ticker")[:100]
    )
    seen: set[str] = set()
    for signal_id, ticker in waiting:
        key = _market_key(ticker)
        if key not in seen:
            seen.add(key)
            signal_enqueue(signal_id, signal.strategy_key or "-")


def _strategy_position(strategy: Strategy, account: ExchangeAccount, symbol: str) -> Decimal:
    row = Position.objects.filter(account=account, strategy=strategy, symbol=symbol).values_list("qty", flat=True)
    return row.first() or Decimal("0")


def _run(signal: Signal) -> None:
    strategy = signal.strategy  # loaded with the signal, its account and the global switch
    account = strategy.account
    reason = _halt_reason(signal, strategy, account, getattr(signal, "global_halted", None))
    if reason:
        signal.orders.filter(status=Order.Status.PENDING).update(status=Order.Status.CANCELLED, reason=reason)
        if signal._first_run or not signal.orders.exclude(status__in=Order.TERMINAL_STATUSES).exists():
            _finish(signal, Signal.Status.BLOCKED, reason)
            return
    if account is None:
        _finish(signal, Signal.Status.FAILED, "this strategy has no exchange account configured")
        return
    paper = signal.is_test
    try:
        gateway = gateway_for(account, paper=paper)
    except Misconfigured as exc:
        _finish(signal, Signal.Status.FAILED, f"account {account.label}: {exc}")
        return
    book_positions = account.is_paper or not signal.is_test

    # Orders exist only after a first claim; the first run has none to look for.
    orders = [] if signal._first_run else list(signal.orders.order_by("leg"))
    if not orders:
        # On PostgreSQL the legs of a first run are written by the first leg's send, in the
        # same statement that claims it (see before_send in _order_submit); elsewhere now.
        defer = signal._first_run and connection.vendor == "postgresql"
        try:
            orders = _plan_orders(signal, strategy, account, gateway, book_positions, insert=not defer)
        except NothingToDo as exc:
            _finish(signal, Signal.Status.SKIPPED, f"nothing to do: {exc}")
            return
        except (PlanError, Misconfigured, ValueError) as exc:
            _finish(signal, Signal.Status.FAILED, str(exc))
            return
        _extend_lease(signal)
        if defer:
            signal._unsaved_legs = orders
        if strategy.leverage and any(o.purpose == Order.Purpose.OPEN for o in orders):
            _legs_save_pending(signal)  # written before anything is said to the exchange
            for symbol in {o.symbol for o in orders}:
                try:
                    gateway.set_leverage(symbol=symbol, leverage=int(strategy.leverage))
                except GatewayError as exc:
                    # Trading at whatever leverage the exchange has set is not what the
                    # trader configured: refuse, before anything is sent.
                    reason = f"could not set leverage {strategy.leverage}x on {symbol}: {exc}"
                    signal.orders.filter(status=Order.Status.PENDING).update(
                        status=Order.Status.CANCELLED, reason=f"not sent: {reason}", closed_at=timezone.now()
                    )
                    _finish(signal, Signal.Status.FAILED, reason)
                    return

    previous: Order | None = None
    for order in orders:
        if previous is not None and previous.purpose == Order.Purpose.CLOSE and order.purpose == Order.Purpose.OPEN:
            if not previous.is_terminal:
                break  # the close is still being resolved: the open leg waits for the next run
            if previous.status != Order.Status.FILLED:
                Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
                    status=Order.Status.CANCELLED,
                    reason="not sent: the closing leg before it did not fill",
                    closed_at=timezone.now(),
                )
                order.refresh_from_db()
        if (
            _order_drive(
                signal,
                strategy,
                gateway,
                order,
                book_positions,
                fresh=order.status == Order.Status.PENDING,
                follow=not (signal._first_run and getattr(signal, "_follow_in_background", False)),
            )
            == "follow_later"
        ):
            _follow_later(signal, orders)
            return
        order.refresh_from_db()
        previous = order

    orders = list(signal.orders.order_by("leg"))
    if any(not o.is_terminal for o in orders):
        # Still open or unresolved: the sweeper brings this signal back when the lease ends.
        logger.info(
            _log(signal, "signal_waiting_on_orders", orders=",".join(f"{o.client_order_id}:{o.status}" for o in orders))
        )
        return
    _finish_from_orders(signal, orders)


def _finish_from_orders(signal: Signal, orders: list[Order]) -> None:
    fills = [o for o in orders if o.filled_qty > 0]
    first = min((o.first_fill_at for o in fills if o.first_fill_at), default=None)
    last = max((o.last_fill_at for o in fills if o.last_fill_at), default=None)
    Signal.objects.filter(pk=signal.pk).update(first_fill_at=Coalesce(F("first_fill_at"), first), filled_at=last)
    if orders and all(o.status == Order.Status.FILLED for o in orders):
        _finish(signal, Signal.Status.EXECUTED)
    elif fills:
        reasons = "; ".join(
            f"leg {o.leg}: {o.get_status_display().lower()}" + (f" ({o.reason})" if o.reason else "")
            for o in orders
            if o.status != Order.Status.FILLED
        )
        _finish(signal, Signal.Status.PARTIAL, f"partly executed: {reasons}")
    else:
        reasons = "; ".join(o.reason for o in orders if o.reason) or "no order filled"
        never_sent = all(o.submit_count == 0 for o in orders)
        if never_sent and any(o.status == Order.Status.CANCELLED and "blocked" in o.reason for o in orders):
            # A kill switch engaged after the claim stopped every leg before it left.
            _finish(signal, Signal.Status.BLOCKED, reasons)
        else:
            _finish(signal, Signal.Status.FAILED, reasons if never_sent else f"order rejected: {reasons}")


def _price_for(signal: Signal, account: ExchangeAccount, symbol: str, own_symbol: str) -> Decimal:
    """The reference price of a leg: the alert's price for the alert's own market; for the
    other markets a close_all flattens, their last fill (or the position's entry)."""
    if symbol == own_symbol:
        return Decimal(signal.price)
    last = (
        Order.objects.filter(account=account, symbol=symbol, avg_price__isnull=False)
        .order_by("-id")
        .values_list("avg_price", flat=True)
        .first()
    )
    if last is None:
        last = Position.objects.filter(account=account, symbol=symbol).values_list("avg_price", flat=True).first()
    return Decimal(last) if last else Decimal(signal.price)


def _legs_save_pending(signal: Signal) -> None:
    """Write legs planned but not written yet (see `_run`) as PENDING: every path that ends
    without the first send writing them leaves them on record all the same."""
    legs = getattr(signal, "_unsaved_legs", None)
    if legs:
        signal._unsaved_legs = None
        hotpath.orders_insert(legs)


def _plan_orders(signal, strategy, account, gateway: Gateway, book_positions: bool, insert: bool = True) -> list[Order]:
    positions: dict[str, Decimal] = {}
    if book_positions:
        positions = getattr(signal, "_positions", None)
        if positions is None or account.pk != strategy.account_id:
            positions = hotpath.strategy_positions(account_id=account.pk, strategy_id=strategy.pk)
    try:
        own_symbol = gateway.resolve_symbol(signal.ticker, account.market_type, strategy.symbol_override)
    except ValueError:
        if signal.action != "close_all":
            raise
        own_symbol = ""
    if signal.action == "close_all":
        symbols = sorted(positions)
        if not symbols:
            raise NothingToDo("no open position for this strategy")
    else:
        symbols = [own_symbol]
    legs = []
    for symbol in symbols:
        market = gateway.market(symbol)
        position = positions.get(symbol, Decimal("0"))
        price = _price_for(signal, account, symbol, own_symbol)
        equity = (
            gateway.fetch_equity(account.paper_quote_currency if account.is_paper else market.quote)
            if (strategy.sizing_mode == "percent_equity" and signal.action in ("buy", "sell"))
            else None
        )
        try:
            legs += [
                (leg, price)
                for leg in plan_legs(
                    action=signal.action,
                    strategy=strategy,
                    market=market,
                    price=price,
                    volume=Decimal(signal.volume),
                    position=position,
                    equity=equity,
                    spot=market.kind == "spot",
                    market_position=signal.market_position,
                    market_position_size=signal.market_position_size,
                )
            ]
        except NothingToDo:
            if signal.action != "close_all":
                raise
    if not legs:
        raise NothingToDo("no open position for this strategy")
    # One INSERT for all legs: atomic on its own, and one round trip before the exchange.
    orders = (hotpath.orders_insert if insert else list)(
        [
            Order(
                signal=signal,
                strategy=strategy,
                account=account,
                leg=i,
                purpose=leg.purpose,
                client_order_id=client_order_id_for(signal_id=signal.pk, leg=i),
                symbol=leg.symbol,
                side=leg.side,
                order_type=leg.order_type,
                reduce_only=leg.reduce_only,
                requested_qty=leg.qty,
                limit_price=leg.limit_price,
                signal_price=price,
            )
            for i, (leg, price) in enumerate(legs, start=1)
        ]
    )
    logger.info(
        _log(
            signal,
            "orders_planned",
            legs=";".join(f"{o.side} {o.requested_qty.normalize()} {o.symbol} {o.order_type}" for o in orders),
        )
    )
    return orders


def _order_drive(
    signal, strategy, gateway: Gateway, order: Order, book_positions: bool, fresh: bool = False, follow: bool = True
) -> str:
    """Take an order as far as this run can. Returns "follow_later" when it is acknowledged
    and open and `follow` is False (the signal's first run, which only sends)."""
    for _ in range(MAX_SUBMITS * 3):
        if not fresh:
            order.refresh_from_db()
        fresh = False
        if order.is_terminal:
            return "done"
        if order.status == Order.Status.PENDING:
            reply = _order_submit(signal, strategy, gateway, order, book_positions, defer_reply=not follow)
            if reply is not None:
                signal._pending_reply = reply
                return "follow_later"
        elif order.status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN):
            if not _order_resolve(signal, gateway, order, book_positions):
                return "unknown"  # still unknown: left for a later run
        elif order.status in (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED):
            if not follow:
                return "follow_later"
            _order_follow(signal, strategy, gateway, order, book_positions)
            return "followed"
    return "gave_up"


def _switches_recheck(signal, strategy, account, order: Order) -> bool:
    """Re-read the kill switches; cancel `order` (never sent) and return True if engaged."""
    _legs_save_pending(signal)
    strategy.refresh_from_db(fields=["halted", "enabled"])
    account.refresh_from_db(fields=["halted"])
    reason = _halt_reason(signal, strategy, account)
    if reason:
        Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
            status=Order.Status.CANCELLED, reason=f"not sent: {reason}", closed_at=timezone.now()
        )
    return bool(reason)


def _order_submit(signal, strategy, gateway: Gateway, order: Order, book_positions: bool, defer_reply: bool = False):
    """Send a PENDING order. With `defer_reply`, a successful reply is returned (order,
    state, sent at, acknowledged at) for the caller to record later instead of recorded
    here; every other outcome is recorded here as usual."""
    account = strategy.account if strategy.account_id == order.account_id else order.account
    # The switches were read with the signal at claim time; read them again when time has
    # passed since (a later leg, a resumed run), so a switch engaged meanwhile still holds.
    if time.monotonic() - getattr(signal, "_claimed_mono", 0.0) > 1.0 and _switches_recheck(
        signal, strategy, account, order
    ):
        return
    sent: dict[str, Any] = {}

    def before_send() -> None:
        """Runs inside the gateway right before the request is signed and sent: take a
        slot in the venue account's shared rate bucket (keeping the lease alive while
        waiting), then claim the order and check ownership in one statement. Nothing slow
        sits between the slot and the request reaching the venue, which counts requests
        as they arrive. A crash after the claim leaves the order SUBMITTING: resolved by
        lookup, never resent blindly."""
        waited = time.monotonic()
        while not order_slot_acquire(
            bucket_key=account.rate_limit_key,
            per_second=account.max_orders_per_second,
            timeout=max(5.0, settings.SIGNAL_LEASE_SECONDS / 3),
        ):
            _extend_lease(signal, force=True)
        if time.monotonic() - waited > 0.5:
            _extend_lease(signal, force=True)
            if _switches_recheck(signal, strategy, account, order):  # engaged while it waited: never sent
                raise SendAborted("kill switch engaged while waiting for a rate-limit slot")
        now = timezone.now()
        if order.pk is None:
            # The first leg of a first run: write the legs with this one claimed, in one
            # statement that also proves this run still owns the signal.
            legs, signal._unsaved_legs = signal._unsaved_legs, None
            if not hotpath.orders_insert_sending_first(orders=legs, signal=signal, now=now):
                raise LeaseLost(signal.pk)
            sent["at"] = now
            return
        if not hotpath.order_claim_for_send(order_id=order.pk, signal=signal, now=now):
            if not _owned(signal).exists():
                raise LeaseLost(signal.pk)
            raise SendAborted("the order moved on meanwhile")
        order.status, order.submit_count, order.submitted_at = Order.Status.SUBMITTING, order.submit_count + 1, now
        sent["at"] = now

    try:
        state = gateway.create_order(
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.requested_qty,
            price=order.limit_price,
            reduce_only=order.reduce_only,
            client_order_id=order.client_order_id,
            signal_price=order.signal_price,
            before_send=before_send,
        )
    except LeaseLost:
        raise
    except SendAborted as exc:
        logger.info(_log(signal, "order_not_sent", order=order.client_order_id, reason=str(exc)))
        return
    except OrderRejected as exc:
        if "at" not in sent:  # refused before anything left (e.g. ccxt's own checks)
            _legs_save_pending(signal)
            _mark_rejected(signal, order, str(exc))
            return
        sent_at = sent["at"]
        _record_sent(signal, order, sent_at)
        if order.submit_count > 1:
            # A resend refused (e.g. "duplicate client id") may mean the first one landed.
            _mark_unknown(signal, order, f"resend refused ({exc}); looking it up")
            return
        _mark_rejected(signal, order, str(exc))
        _count_error(gateway, "rejected")
        return
    except Misconfigured as exc:
        _legs_save_pending(signal)
        if "at" in sent:
            _record_sent(signal, order, sent["at"])
        _mark_rejected(signal, order, f"account or symbol misconfigured: {exc}")
        _count_error(gateway, "misconfigured")
        return
    except GatewayError as exc:  # TemporaryError, RateLimited and anything unclassified
        if "at" not in sent:
            # Failed before the hook ran (e.g. markets could not be loaded): nothing was sent
            # and the order is still PENDING; the sweeper brings the signal back.
            _legs_save_pending(signal)
            logger.warning(_log(signal, "order_not_sent", order=order.client_order_id, reason=str(exc)[:200]))
            raise RetryLater(str(exc)) from exc
        _record_sent(signal, order, sent["at"])
        _mark_unknown(signal, order, f"outcome unknown after: {exc}")
        _count_error(gateway, type(exc).__name__)
        return
    if defer_reply:
        # Recording the acknowledgement is the follower's first job (see _follow_later).
        return (order, state, sent["at"], timezone.now())
    _record_sent(signal, order, sent["at"])
    order_apply_state(order=order, state=state, book_positions=book_positions, reply=True)
    return None


def _record_sent(signal, order: Order, sent_at) -> None:
    Signal.objects.filter(pk=signal.pk, sent_at__isnull=True).update(sent_at=sent_at)
    logger.info(
        _log(
            signal,
            "order_sent",
            order=order.client_order_id,
            side=order.side,
            qty=order.requested_qty.normalize(),
            symbol=order.symbol,
            type=order.order_type,
            attempt=order.submit_count,
        )
    )


def _count_error(gateway: Gateway, kind: str) -> None:
    try:
        from tvtrader.ops.metrics import exchange_error_inc

        exchange_error_inc(getattr(gateway, "name", "?"), kind)
    except Exception:
        logger.debug("metrics unavailable", exc_info=True)


def _mark_rejected(signal, order: Order, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(
        status=Order.Status.REJECTED, reason=reason[:2000], closed_at=timezone.now()
    )
    logger.warning(_log(signal, "order_rejected", order=order.client_order_id, reason=reason[:300]))


def _mark_unknown(signal, order: Order, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(status=Order.Status.UNKNOWN, reason=reason[:2000])
    logger.warning(_log(signal, "order_unknown", order=order.client_order_id, reason=reason[:300]))


def _order_resolve(signal, gateway: Gateway, order: Order, book_positions: bool) -> bool:
    """Find out what happened to an order whose creation had no clear answer. Returns True
    when the order left UNKNOWN (found, or proven never received and reset to PENDING)."""
    grace = settings.ORDER_NOT_FOUND_GRACE_SECONDS
    if not gateway.client_id_always_unique:
        # The venue would accept a reused id once the first order is no longer open, so
        # "not found" must hold much longer before a resend is safe.
        grace = max(grace * 6, 30.0)
    for delay in RESOLVE_BACKOFF:
        _extend_lease(signal)
        Order.objects.filter(pk=order.pk).update(lookup_count=F("lookup_count") + 1)
        try:
            state = gateway.find_order(
                symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
            )
        except GatewayError as exc:
            logger.info(_log(signal, "order_lookup_failed", order=order.client_order_id, error=str(exc)[:200]))
            time.sleep(delay)
            continue
        if state is not None:
            logger.info(_log(signal, "order_found", order=order.client_order_id, status=state.status))
            order_apply_state(order=order, state=state, book_positions=book_positions)
            return True
        order.refresh_from_db()
        since = (timezone.now() - order.submitted_at).total_seconds() if order.submitted_at else grace
        if since >= grace:
            if order.submit_count >= MAX_SUBMITS:
                _mark_rejected(
                    signal, order, f"the exchange never received this order after {order.submit_count} attempts"
                )
                return True
            reset = Order.objects.filter(
                pk=order.pk,
                status__in=[Order.Status.UNKNOWN, Order.Status.SUBMITTING],
                submitted_at__lte=timezone.now() - timedelta(seconds=grace),
            ).update(
                status=Order.Status.PENDING,
                reason=f"not received by the exchange (not found for {since:.0f} s); "
                "resending with the same client order id",
            )
            logger.warning(_log(signal, "order_not_received", order=order.client_order_id, after_s=round(since, 1)))
            return bool(reset)
        time.sleep(min(delay, max(0.05, grace - since)))
    # Still unknown: keep the signal leased briefly; the sweeper re-runs it. It keeps blocking
    # the signals behind it (the order may well exist), so after a few runs say so loudly.
    Order.objects.filter(pk=order.pk, status=Order.Status.SUBMITTING).update(status=Order.Status.UNKNOWN)
    _owned(signal).update(lease_until=_lease(15))
    order.refresh_from_db()
    if signal.attempts >= 4 and not order.reason.startswith("needs an operator"):
        Order.objects.filter(pk=order.pk).update(
            reason=f"needs an operator: still unknown after {signal.attempts} runs ({order.reason})"[:2000]
        )
        try:
            from tvtrader.ops.notifications import notification_send

            notification_send(
                event="signal_failed",
                strategy=signal.strategy,
                text=f"⚠️ {signal.strategy_key}: order {order.client_order_id} ({order.side} {order.symbol}) is "
                f"still unknown at the exchange after {signal.attempts} runs; later alerts for this market wait "
                "behind it. Check the exchange, then run `manage.py reconcile`.",
            )
        except Exception:
            logger.exception(_log(signal, "notification_failed"))
    return False


def _order_follow(signal, strategy, gateway: Gateway, order: Order, book_positions: bool) -> None:
    """Poll an acknowledged order to a final state; cancel a limit order past its timeout."""
    _send_phase_end(signal)
    started = time.monotonic()
    age = (timezone.now() - order.submitted_at).total_seconds() if order.submitted_at else 0.0
    # Back-off by the order's age, so a follow-up resumed later does not start polling fast again.
    step, elapsed = 0, FOLLOW_BACKOFF[0]
    while step < len(FOLLOW_BACKOFF) - 1 and elapsed + FOLLOW_BACKOFF[step + 1] <= age:
        step += 1
        elapsed += FOLLOW_BACKOFF[step]
    for i in range(step, step + 10_000):
        if i == 0 and order.submitted_at is not None:
            # The first look comes FOLLOW_BACKOFF[0] after the send (a handed-off run has
            # already waited most of it in the queue).
            time.sleep(max(0.0, FOLLOW_BACKOFF[0] - age))
        _sends_first()
        order.refresh_from_db()
        if order.is_terminal:
            return
        age = (timezone.now() - (order.submitted_at or timezone.now())).total_seconds()
        try:
            if order.order_type == "limit" and age >= strategy.limit_timeout_seconds:
                state = gateway.cancel_order(
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    exchange_order_id=order.exchange_order_id,
                )
                logger.info(
                    _log(
                        signal, "order_timeout_cancel", order=order.client_order_id, filled=order.filled_qty.normalize()
                    )
                )
            else:
                state = gateway.find_order(
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    exchange_order_id=order.exchange_order_id,
                )
        except GatewayError as exc:
            logger.info(_log(signal, "order_poll_failed", order=order.client_order_id, error=str(exc)[:200]))
            state = None
        if state is not None:
            order_apply_state(order=order, state=state, book_positions=book_positions)
            order.refresh_from_db()
            if order.is_terminal:
                return
        if time.monotonic() - started > FOLLOW_MAX_SECONDS:
            remaining = strategy.limit_timeout_seconds - age if order.order_type == "limit" else 30
            # Come back within 30 s (not at the timeout): a fill must not wait, and nor must the
            # signals queued behind this one.
            _owned(signal).update(lease_until=_lease(int(min(30, max(5, remaining)))))
            return
        if getattr(signal, "_on_follower", False) and time.monotonic() - started > FOLLOW_SLICE_SECONDS:
            _extend_lease(signal, force=True)
            signal._follow_again = True  # back of the followers' queue (see _follow_run)
            return
        if _stopping.is_set():
            _owned(signal).update(lease_until=timezone.now())
            logger.info(_log(signal, "signal_follow_released", reason="worker shutting down"))
            return
        _extend_lease(signal)
        _stopping.wait(FOLLOW_BACKOFF[min(i, len(FOLLOW_BACKOFF) - 1)])


# --- recording what the exchange says ---------------------------------------------------


def order_apply_state(
    *, order: Order, state: OrderState, book_positions: bool = True, reply: bool = False, acked_at=None
) -> None:
    """Record a venue's view of an order: status, new fills (as deltas of the cumulative
    filled quantity, each a `Fill` row, idempotent), positions and the latency chain."""
    now = timezone.now()
    position_fill: tuple[Decimal, Decimal, Decimal] | None = None
    with transaction.atomic():
        current = Order.objects.select_for_update().get(pk=order.pk)
        updates: dict[str, Any] = {}
        if state.exchange_order_id and not current.exchange_order_id:
            updates["exchange_order_id"] = state.exchange_order_id[:64]
        if current.acked_at is None:
            updates["acked_at"] = acked_at or now
        replies = list(current.replies or [])
        if len(replies) < 20:
            replies.append(
                {"at": now.isoformat(), "status": state.status, "filled": str(state.filled), "info": _redact(state.raw)}
            )
            updates["replies"] = replies
        delta = state.filled - current.filled_qty
        if delta > 0:
            prior_cost = (current.avg_price or Decimal("0")) * current.filled_qty
            total_cost = (state.average or current.avg_price or Decimal("0")) * state.filled
            fill_price = (total_cost - prior_cost) / delta if total_cost else (state.average or Decimal("0"))
            fee_delta = max(state.fee - current.fee, Decimal("0"))
            Fill.objects.get_or_create(
                order=current,
                trade_id=f"{state.exchange_order_id or current.client_order_id}:{state.filled}",
                defaults={
                    "qty": delta,
                    "price": fill_price,
                    "fee": fee_delta,
                    "fee_currency": state.fee_currency,
                    "filled_at": now,
                },
            )
            updates.update(
                filled_qty=state.filled,
                avg_price=state.average or fill_price,
                fee=state.fee,
                fee_currency=state.fee_currency[:16],
                last_fill_at=now,
            )
            if current.first_fill_at is None:
                updates["first_fill_at"] = now
            average = state.average or fill_price
            if current.signal_price:
                signed = (average - current.signal_price) if current.side == "buy" else (current.signal_price - average)
                updates["slippage_bps"] = (signed / current.signal_price * BPS).quantize(Decimal("0.01"))
            if book_positions:
                # A spot buy's fee taken in the base coin leaves less of it to sell later.
                held = delta
                if (
                    state.fee_currency
                    and state.fee_currency == current.symbol.split("/")[0]
                    and ":" not in (current.symbol)
                    and current.side == "buy"
                ):
                    held = max(delta - fee_delta, Decimal("0"))
                position_fill = (
                    held,
                    fill_price,
                    _fee_in_quote(current.symbol, fee_delta, state.fee_currency, fill_price),
                )
        status = _STATUS_MAP.get(state.status, current.status)
        if status != current.status and current.status not in Order.TERMINAL_STATUSES:
            updates["status"] = status
            if status in Order.TERMINAL_STATUSES:
                updates["closed_at"] = now
            if status == Order.Status.REJECTED and state.reason:
                updates["reason"] = state.reason[:2000]
        elif current.status == Order.Status.UNKNOWN:
            updates["status"] = status
        if updates:
            Order.objects.filter(pk=current.pk).update(**updates)
        signal_updates: dict[str, Any] = {"acked_at": Coalesce(F("acked_at"), now)}
        if delta > 0:
            signal_updates["first_fill_at"] = Coalesce(F("first_fill_at"), now)
        Signal.objects.filter(pk=current.signal_id).update(**signal_updates)
        if position_fill is not None:
            # Last, right before the commit: the account-level position row of a symbol is
            # shared by every strategy trading it, so its lock must be held as briefly as possible.
            _position_apply(current, *position_fill)


def _redact(info: dict[str, Any]) -> dict[str, Any]:
    hidden = ("key", "secret", "sign", "passphrase", "password", "token")
    return {k: ("[redacted]" if any(h in str(k).lower() for h in hidden) else v) for k, v in list(info.items())[:60]}


def _position_row(account_id: int, strategy_id: int | None, symbol: str) -> Position:
    lookup = {"account_id": account_id, "strategy_id": strategy_id, "symbol": symbol}
    row = Position.objects.select_for_update().filter(**lookup).first()
    if row is None:
        try:
            with transaction.atomic():
                Position.objects.create(**lookup)
        except IntegrityError:
            pass
        row = Position.objects.select_for_update().get(**lookup)
    return row


def _fee_in_quote(symbol: str, fee: Decimal, currency: str, price: Decimal) -> Decimal:
    """A fill's fee in the market's quote (or settlement) currency: as is, or valued at the
    fill's price when taken in the base coin; 0 for any other currency (no price for it)."""
    if not fee:
        return Decimal("0")
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    currency = (currency or "").upper()
    if currency in (quote.upper(), settle.upper()):
        return fee
    if currency == base.upper():
        return fee * price
    return Decimal("0")


def _position_apply(order: Order, qty: Decimal, price: Decimal, fee: Decimal = Decimal("0")) -> None:
    """Apply one fill (and its fee, in the quote currency) to the account's net position and
    to the strategy's share of it."""
    signed = qty if order.side == "buy" else -qty
    for strategy_id in (None, order.strategy_id):
        row = _position_row(order.account_id, strategy_id, order.symbol)
        old = row.qty
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            # Opening or adding: weighted average entry.
            base = (row.avg_price or price) * abs(old)
            row.avg_price = (base + price * abs(signed)) / abs(new) if new else None
        else:
            closed = min(abs(old), abs(signed))
            direction = 1 if old > 0 else -1
            row.realized_pnl += (price - (row.avg_price or price)) * closed * direction
            if new == 0:
                row.avg_price = None
            elif (new > 0) != (old > 0):
                row.avg_price = price  # flipped through zero: the rest opened at this price
        row.qty = new
        row.fees_paid += fee
        row.save(update_fields=["qty", "avg_price", "realized_pnl", "fees_paid", "updated_at"])


# --- operator verbs ---------------------------------------------------------------------


def strategy_cancel_open_orders(*, strategy: Strategy, actor: Any) -> int:
    """Cancel every open order of `strategy` at the exchange; returns how many."""
    cancelled = 0
    open_orders = Order.objects.filter(
        strategy=strategy, status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED]
    ).select_related("account", "signal")
    for order in open_orders:
        gateway = gateway_for(order.account, paper=order.signal.is_test)
        try:
            state = gateway.cancel_order(
                symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
            )
        except OrderNotFound:
            # The venue has no such working order: whatever it was, it is not open any more.
            state = gateway.find_order(
                symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
            )
            if state is None:
                Order.objects.filter(pk=order.pk, status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED]).update(
                    status=Order.Status.CANCELLED,
                    closed_at=timezone.now(),
                    reason="cancelled by an operator; the exchange no longer had it",
                )
                cancelled += 1
                continue
        except GatewayError as exc:
            logger.warning(
                "event=cancel_failed strategy=%s order=%s error=%s",
                strategy.strategy_id,
                order.client_order_id,
                str(exc)[:200],
            )
            continue
        if state is not None:
            order_apply_state(
                order=order, state=state, book_positions=order.account.is_paper or not order.signal.is_test
            )
        cancelled += 1
    logger.warning("event=orders_cancelled strategy=%s count=%d actor=%s", strategy.strategy_id, cancelled, actor)
    return cancelled


def strategy_flatten(*, strategy: Strategy, actor: Any) -> Signal | None:
    """Close every position of `strategy`: a close_all signal through the normal chain
    (ordered behind anything pending, allowed through the kill switch). Returns the signal,
    or None when the strategy holds nothing."""
    from signals.services import signal_enqueue

    if strategy.account_id is None:
        return None
    positions = Position.objects.filter(strategy=strategy, account_id=strategy.account_id).exclude(qty=0)
    first = positions.first()
    if first is None:
        return None
    last_price = (
        (
            Order.objects.filter(strategy=strategy, symbol=first.symbol, avg_price__isnull=False)
            .order_by("-id")
            .values_list("avg_price", flat=True)
            .first()
        )
        or first.avg_price
        or Decimal("1")
    )
    ticker = (
        Signal.objects.filter(strategy=strategy)
        .exclude(ticker="")
        .order_by("-id")
        .values_list("ticker", flat=True)
        .first()
    ) or first.symbol.split("/")[0] + "USDT.P"
    name = getattr(actor, "get_username", lambda: str(actor or "system"))()
    now = timezone.now()
    with transaction.atomic():
        signal = Signal.objects.create(
            strategy=strategy,
            strategy_key=strategy.strategy_id,
            status=Signal.Status.ACCEPTED,
            action="close_all",
            ticker=ticker,
            exchange="",
            price=last_price,
            volume=abs(first.qty),
            received_at=now,
            committed_at=now,
            content_type="flatten",
            origin=Signal.Origin.FLATTEN,
            payload={"flatten": True, "requested_by": name},
            comment=f"flatten requested by {name}"[:255],
        )
        transaction.on_commit(lambda: signal_enqueue(signal.pk))
    logger.warning("event=flatten_requested strategy=%s signal=%s actor=%s", strategy.strategy_id, signal.pk, name)
    return signal


def signal_replay_on_paper(*, signal: Signal, actor: Any = None) -> dict:
    """What `signal` would do now, planned against the paper exchange and the strategy's
    current position — nothing is placed. Returns {"ok", "legs" | "reason"}."""
    strategy = signal.strategy
    if strategy is None or strategy.account is None:
        return {"ok": False, "reason": "the signal's strategy has no exchange account"}
    if not signal.action or signal.price is None or signal.volume is None:
        return {"ok": False, "reason": "the signal was rejected at intake and has nothing to replay"}
    account = strategy.account
    gateway = gateway_for(account, paper=True)
    try:
        symbol = gateway.resolve_symbol(signal.ticker, account.market_type, strategy.symbol_override)
        market = gateway.market(symbol)
        position = _strategy_position(strategy, account, symbol)
        equity = gateway.fetch_equity() if strategy.sizing_mode == "percent_equity" else None
        legs = plan_legs(
            action=signal.action,
            strategy=strategy,
            market=market,
            price=Decimal(signal.price),
            volume=Decimal(signal.volume),
            position=position,
            equity=equity,
            spot=market.kind == "spot",
            market_position=signal.market_position,
            market_position_size=signal.market_position_size,
        )
    except NothingToDo as exc:
        return {"ok": True, "legs": [], "reason": f"nothing to do: {exc}"}
    except (PlanError, GatewayError, ValueError) as exc:
        return {"ok": False, "reason": str(exc)}
    return {
        "ok": True,
        "position": str(position.normalize()),
        "legs": [
            {
                "symbol": leg.symbol,
                "side": leg.side,
                "qty": str(leg.qty.normalize()),
                "type": leg.order_type,
                "limit_price": str(leg.limit_price.normalize()) if leg.limit_price is not None else None,
                "reduce_only": leg.reduce_only,
                "purpose": leg.purpose,
            }
            for leg in legs
        ],
    }


def account_test_connection(*, account: ExchangeAccount) -> dict:
    """Check credentials and connectivity with one balance read (and markets), then that the
    venue account's own settings (position mode, account or margin mode) match this account's;
    a mismatch is explained and fails the test ("problems" lists each)."""
    try:
        gateway = gateway_for(account)
        equity = gateway.fetch_equity(account.paper_quote_currency if account.is_paper else "USDT")
        problems = gateway.account_setup_problems()
    except GatewayError as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # credentials that cannot be decrypted, etc.
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    shown = format(equity.normalize(), "f")  # 100000, not 1E+5
    if problems:
        return {
            "ok": False,
            "detail": f"connected (equity {shown}), but the exchange account's settings do not match this "
            f"account: {'; '.join(problems)}.",
            "problems": problems,
        }
    return {"ok": True, "detail": f"connected; equity {shown}"}


def _strategy_problems(strategy: Strategy, market_for, ticker: str) -> dict[str, str]:
    """Shared checks behind `strategy_check` and `strategy_validate_market`. `market_for`
    turns a ccxt symbol into MarketInfo (raising GatewayError when unknown), or returns None
    when the markets are not known here."""
    account = strategy.account
    problems: dict[str, str] = {}
    try:
        symbol = (
            tradingview_to_ccxt(ticker, account.market_type)
            if not strategy.symbol_override
            else (strategy.symbol_override)
        )
        market = market_for(symbol)
    except (GatewayError, ValueError) as exc:
        field = "symbol_override" if strategy.symbol_override else "account"
        return {field: str(exc)}
    if market is None:
        return {}
    price = (
        Signal.objects.filter(strategy_id=strategy.pk, price__isnull=False)
        .order_by("-id")
        .values_list("price", flat=True)
        .first()
        if strategy.pk
        else None
    )
    value = Decimal(strategy.size_value) if strategy.size_value is not None else None
    if strategy.sizing_mode == "fixed_base" and value is not None:
        qty = market.round_qty(value)
        if qty < market.min_qty or qty <= 0:
            problems["size_value"] = (
                f"{value.normalize()} is below {market.symbol}'s minimum order of {market.min_qty.normalize()}"
            )
    if strategy.sizing_mode == "fixed_quote" and value is not None:
        if market.min_notional and value < market.min_notional:
            problems["size_value"] = (
                f"{value.normalize()} {market.quote} is below {market.symbol}'s minimum order "
                f"value of {market.min_notional.normalize()} {market.quote}"
            )
        elif price:
            qty = market.round_qty(value / Decimal(price))
            if qty < market.min_qty or qty <= 0:
                problems["size_value"] = (
                    f"{value.normalize()} {market.quote} buys {qty.normalize()} at "
                    f"{Decimal(price).normalize()}, below the minimum order of "
                    f"{market.min_qty.normalize()}"
                )
    if strategy.leverage and market.kind == "spot":
        problems["leverage"] = "leverage is set but the account trades spot"
    elif strategy.leverage and market.max_leverage and strategy.leverage > market.max_leverage:
        problems["leverage"] = f"{strategy.leverage}x is above {market.symbol}'s limit of {market.max_leverage}x"
    return problems


def strategy_check(*, strategy: Strategy, ticker: str = "BTCUSDT.P") -> list[str]:
    """Problems a trade would hit, found before one does, asking the exchange for its
    markets if this process has not loaded them yet (not for use inside a transaction)."""
    if strategy.account is None:
        return ["choose an exchange account"]
    try:
        gateway = gateway_for(strategy.account)
    except GatewayError as exc:
        return [f"account: {exc}"]
    problems = _strategy_problems(strategy, gateway.market, ticker)
    return [
        f"{field}: {message}" if field in ("account", "symbol_override") else message
        for field, message in problems.items()
    ]


def strategy_validate_market(*, strategy: Strategy, ticker: str = "BTCUSDT.P") -> dict[str, str]:
    """The same checks for the admin form, from markets already known (the paper
    exchange's rules, or the snapshot a worker saved when it loaded the exchange's markets):
    no exchange call, because the admin validates inside a database transaction."""
    if strategy.account is None:
        return {}
    from .selectors import cached_market

    if strategy.account.is_paper:
        from .exchanges.paper import PaperGateway

        lookup = PaperGateway(strategy.account).market
    else:

        def lookup(symbol: str):
            return cached_market(strategy.account, symbol)

    return _strategy_problems(strategy, lookup, ticker)


def gateways_warm() -> int:
    """Load markets for every account an enabled strategy trades on (worker start-up)."""
    warmed = 0
    accounts = ExchangeAccount.objects.filter(strategies__enabled=True).exclude(mode=ExchangeAccount.Mode.PAPER)
    for account in accounts.distinct():
        try:
            gateway = gateway_for(account)
            warm = getattr(gateway, "warm", None)
            if warm:
                warm()
                warmed += 1
        except Exception as exc:
            logger.warning("event=warm_failed account=%s error=%s", account.label, str(exc)[:200])
    return warmed
