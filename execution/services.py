"""Operator verbs for execution: cancel a strategy's open orders, flatten its positions,
replay a signal on paper, test an account's connection, check a strategy's settings against
its exchange's markets. The engine itself lives in `execution.engine`.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from signals.models import Signal
from signals.outbox import signal_enqueue
from strategies.models import Strategy

from .engine import plan as planning
from .engine import signal_execute  # noqa: F401  (the engine's entry point, for scripts and tests)
from .engine.ledger import order_apply_state
from .exchanges import GatewayError, OrderNotFound, gateway_for
from .models import ExchangeAccount, Order, Position

logger = logging.getLogger("tvtrader.execution")


def strategy_cancel_open_orders(*, strategy: Strategy, actor: Any) -> int:
    """Cancel every open order of `strategy` at the exchange; returns how many. Protective
    orders (stop-loss, take-profit, trailing stop) stay: they only ever reduce a position,
    and go with it when it is flattened."""
    cancelled = 0
    open_orders = (
        Order.objects.filter(strategy=strategy, status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED])
        .filter(protection="")
        .select_related("account", "signal")
    )
    for order in open_orders:
        gateway = gateway_for(order.account, scratch=order.signal.is_test)
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
            order_apply_state(order=order, state=state, book_positions=not order.signal.is_test)
        cancelled += 1
    logger.warning("event=orders_cancelled strategy=%s count=%d actor=%s", strategy.strategy_id, cancelled, actor)
    return cancelled


def strategy_flatten(*, strategy: Strategy, actor: Any) -> Signal | None:
    """Close every position of `strategy`: a close_all signal through the normal chain
    (ordered behind anything pending, allowed through the kill switch). Returns the signal,
    or None when the strategy holds nothing."""
    if strategy.account_id is None:
        return None
    positions = Position.objects.filter(strategy=strategy).exclude(qty=0)
    if not strategy.fans_out:  # otherwise the close_all fans out to every account it holds on
        positions = positions.filter(account_id=strategy.account_id)
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
    """What `signal` would do now, planned by the engine's own planner (engine.plan.signal_plan,
    the path a run takes) against the paper exchange and the strategy's current positions —
    nothing is placed. Returns {"ok", "legs" | "reason", "position"}."""
    strategy = signal.strategy
    if strategy is None or strategy.account is None:
        return {"ok": False, "reason": "the signal's strategy has no exchange account"}
    if not signal.action or signal.price is None or signal.volume is None:
        return {"ok": False, "reason": "the signal was rejected at intake and has nothing to replay"}
    account = strategy.account
    gateway = gateway_for(account, paper=True)
    positions = planning.statements.strategy_positions(account_id=account.pk, strategy_id=strategy.pk)
    try:
        own = gateway.resolve_symbol(signal.ticker, account.market_type, strategy.symbol_override)
    except ValueError:
        own = ""
    try:
        legs = planning.signal_plan(
            signal=signal, strategy=strategy, account=account, gateway=gateway, positions=positions
        )
    except planning.NothingToDo as exc:
        return {"ok": True, "legs": [], "reason": f"nothing to do: {exc}", "position": _qty(positions.get(own))}
    except (planning.PlanError, GatewayError, ValueError) as exc:
        return {"ok": False, "reason": str(exc)}
    return {
        "ok": True,
        "position": _qty(positions.get(own)),
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


def _qty(value: Decimal | None) -> str:
    return str((value or Decimal("0")).normalize())


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


def _recent_price(strategy: Strategy):
    if not strategy.pk:
        return None
    return (
        Signal.objects.filter(strategy_id=strategy.pk, price__isnull=False)
        .order_by("-id")
        .values_list("price", flat=True)
        .first()
    )


def strategy_check(*, strategy: Strategy, ticker: str = "BTCUSDT.P") -> list[str]:
    """Problems a trade would hit, found before one does, asking the exchange for its
    markets if this process has not loaded them yet (not for use inside a transaction)."""
    if strategy.account is None:
        return ["choose an exchange account"]
    try:
        gateway = gateway_for(strategy.account)
    except GatewayError as exc:
        return [f"account: {exc}"]
    problems = planning.market_errors(strategy, gateway.market, ticker=ticker, price=_recent_price(strategy))
    return [
        f"{field}: {message}" if field in ("account", "symbol_override") else message
        for field, message in problems.items()
    ]


def strategy_validate_market(*, strategy: Strategy, ticker: str = "BTCUSDT.P") -> dict[str, str]:
    """The same checks for the admin form and the API, from markets already known (the paper
    exchange's rules, or the snapshot a worker saved when it loaded the exchange's markets):
    no exchange call, because they validate inside a database transaction."""
    if strategy.account is None:
        return {}
    from .selectors import cached_market

    if strategy.account.is_paper:
        from .exchanges.paper import PaperGateway

        lookup = PaperGateway(strategy.account).market
    else:

        def lookup(symbol: str):
            return cached_market(strategy.account, symbol)

    return planning.market_errors(strategy, lookup, ticker=ticker, price=_recent_price(strategy))


def strategy_sizing_preview(
    *,
    strategy: Strategy,
    action: str = "buy",
    price: Decimal | None = None,
    volume: Decimal | None = None,
    ticker: str = "BTCUSDT.P",
) -> dict:
    """What an alert (`action`, `ticker`, `price`, `volume`) would send now: planned by the
    engine's own planner (engine.plan.signal_plan, the path a real run takes) with the
    strategy's positions and each account's gateway — nothing is placed. The exchange may be
    asked for its markets and equity: not for use inside a transaction.

    Returns {"ok", "price", "subscriptions": [{"account", "ok", "legs" | "reason", "equity",
    "text"}]}: per leg its quantity, notional and share of equity, and a sentence for people."""
    price = Decimal(str(price)) if price is not None else _recent_price(strategy)
    if price is None or price <= 0:
        return {"ok": False, "reason": "give a price (no alert with a price was received yet)", "subscriptions": []}
    volume = Decimal(str(volume)) if volume is not None else Decimal("0.01")
    signal = Signal(strategy=strategy, strategy_key=strategy.strategy_id, action=action, ticker=ticker,
                    price=price, volume=volume)  # fmt: skip
    results = [
        _preview_one(strategy=effective, account=effective.account, signal=signal)
        for effective in _subscribed(strategy)
    ]
    if not results:
        return {"ok": False, "reason": "the strategy has no exchange account", "subscriptions": []}
    return {"ok": all(r["ok"] for r in results), "price": str(price.normalize()), "subscriptions": results}


def _subscribed(strategy: Strategy) -> list[Strategy]:
    """The strategy as each run of an alert sees it: on its own account, or, when it fans
    out, on each enabled subscription (strategies.subscriptions)."""
    if not strategy.fans_out:
        return [strategy] if strategy.account_id else []
    from strategies.models import Subscription
    from strategies.subscriptions import effective_strategy

    subs = Subscription.objects.filter(strategy=strategy, enabled=True).select_related("account").order_by("id")
    return [effective_strategy(strategy, sub) for sub in subs]


def _preview_one(*, strategy: Strategy, account: ExchangeAccount, signal: Signal) -> dict:
    out: dict[str, Any] = {"account": account.label, "mode": account.mode}
    try:
        gateway = gateway_for(account)
        positions = planning.statements.strategy_positions(account_id=account.pk, strategy_id=strategy.pk)
        legs = planning.signal_plan(
            signal=signal, strategy=strategy, account=account, gateway=gateway, positions=positions
        )
    except planning.NothingToDo as exc:
        return {**out, "ok": True, "legs": [], "text": f"{account.label}: nothing to send ({exc})"}
    except (planning.PlanError, GatewayError, ValueError) as exc:
        return {**out, "ok": False, "reason": str(exc), "text": f"{account.label}: would fail — {exc}"}
    try:
        quote = gateway.market(legs[0].symbol).quote
        equity = gateway.fetch_equity(account.paper_quote_currency if account.is_paper else quote)
    except GatewayError:
        equity = None
    shown = []
    for leg in legs:
        notional = leg.qty * (leg.limit_price or leg.price)
        base, _, rest = leg.symbol.partition("/")
        quote = rest.split(":")[0]
        share = (notional / equity * 100) if equity else None
        shown.append(
            {
                "symbol": leg.symbol,
                "side": leg.side,
                "purpose": leg.purpose,
                "qty": str(leg.qty.normalize()),
                "type": leg.order_type,
                "limit_price": str(leg.limit_price.normalize()) if leg.limit_price is not None else None,
                "notional": str(notional.quantize(Decimal("0.01"))),
                "quote": quote,
                "percent_of_equity": str(share.quantize(Decimal("0.1"))) if share is not None else None,
                "text": f"{leg.side} {format(leg.qty.normalize(), 'f')} {base} ≈ {notional:,.2f} {quote}"
                + (f", {share:.1f} % of equity" if share is not None else "")
                + (" (close)" if leg.purpose == "close" else ""),
            }
        )
    return {
        **out,
        "ok": True,
        "equity": str(equity.quantize(Decimal("0.01"))) if equity is not None else None,
        "legs": shown,
        "text": f"{account.label}: would send " + "; then ".join(leg["text"] for leg in shown),
    }
