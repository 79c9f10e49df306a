"""The paper exchange: a gateway like any other, with its book and balances in the
database. Market orders fill at the signal price plus a configurable slippage and fee;
limit orders fill when marketable against the latest known price, else rest until the
strategy's timeout cancels them. It is the embedded default, so `make run` trades on paper
out of the box.

A scratch gateway (test signals) fills its orders the same way, against the same book, but
never moves the balance and its orders never count in the book's positions: a test signal
shows the whole chain working and leaves what the trader watches unchanged."""

from __future__ import annotations

import threading
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum

from .base import Gateway, MarketInfo, OrderState, PositionInfo
from .errors import OrderNotFound, OrderRejected

# Lot steps for common bases; anything else trades in steps of 0.001.
_AMOUNT_STEPS = {
    "BTC": Decimal("0.001"),
    "ETH": Decimal("0.01"),
    "SOL": Decimal("0.1"),
    "BNB": Decimal("0.01"),
    "XRP": Decimal("1"),
    "DOGE": Decimal("1"),
    "ADA": Decimal("1"),
    "LTC": Decimal("0.1"),
    "AVAX": Decimal("0.1"),
    "LINK": Decimal("0.1"),
    "DOT": Decimal("0.1"),
    "TRX": Decimal("1"),
}
BPS = Decimal("10000")


class PaperGateway(Gateway):
    name = "paper"
    client_id_always_unique = True

    # Latest price seen per (account, symbol), shared by the threads of this process.
    _marks: dict[tuple[int, str], Decimal] = {}
    _marks_lock = threading.Lock()

    def __init__(self, account, *, scratch: bool = False):
        self.account = account
        self.scratch = scratch
        self.account_id = account.pk
        self.market_type = account.market_type
        self.fee_rate = Decimal(account.paper_fee_bps) / BPS
        self.slippage = Decimal(account.paper_slippage_bps) / BPS
        self.quote = account.paper_quote_currency
        self.leverage: dict[str, int] = {}

    # --- market data --------------------------------------------------------------------

    def market(self, symbol: str) -> MarketInfo:
        base, _, rest = symbol.partition("/")
        quote = rest.split(":")[0]
        if not base or not quote:
            from .errors import Misconfigured

            raise Misconfigured(f"{symbol!r} is not a ccxt symbol like BTC/USDT:USDT")
        step = _AMOUNT_STEPS.get(base, Decimal("0.001"))
        linear = ":" in symbol
        return MarketInfo(
            symbol=symbol,
            base=base,
            quote=quote,
            kind="linear" if linear else "spot",
            amount_step=step,
            price_step=Decimal("0.01"),
            min_qty=step,
            min_notional=Decimal("5") if linear else Decimal("1"),
            max_leverage=100 if linear else None,
        )

    def _set_mark(self, symbol: str, price: Decimal | None) -> None:
        if price:
            with self._marks_lock:
                self._marks[(self.account_id, symbol)] = price

    def _mark(self, symbol: str) -> Decimal | None:
        with self._marks_lock:
            return self._marks.get((self.account_id, symbol))

    # --- orders -------------------------------------------------------------------------

    def create_order(
        self,
        *,
        symbol,
        side,
        order_type,
        qty,
        price,
        reduce_only,
        client_order_id,
        signal_price=None,
        before_send=None,
    ) -> OrderState:
        from execution.models import PaperOrder

        if before_send is not None:
            before_send()

        reference = signal_price or price or self._mark(symbol)
        if reference is None:
            raise OrderRejected("paper exchange has no price for this symbol (the alert carried none)")
        self._set_mark(symbol, reference)
        # A price seen is a price the resting protective orders see first.
        self.prices_seen(symbol=symbol, price=reference)
        try:
            with transaction.atomic():
                order = PaperOrder.objects.create(
                    account_id=self.account_id,
                    client_order_id=client_order_id,
                    symbol=symbol,
                    side=side,
                    order_type=order_type,
                    reduce_only=reduce_only,
                    qty=qty,
                    limit_price=price,
                    status="open",
                    scratch=self.scratch,
                )
                self._check_and_fill(order, reference)
        except IntegrityError as exc:
            raise OrderRejected(f"duplicate client order id {client_order_id}") from exc
        return self._state(order)

    def _fill_price(self, side: str, reference: Decimal) -> Decimal:
        return reference * (1 + self.slippage) if side == "buy" else reference * (1 - self.slippage)

    def _check_and_fill(self, order, reference: Decimal) -> None:
        """Fill `order` (inside the caller's transaction) if it is marketable."""
        fill_price = self._fill_price(order.side, reference)
        if order.order_type == "limit" and order.limit_price is not None:
            if order.side == "buy" and order.limit_price < reference:
                return
            if order.side == "sell" and order.limit_price > reference:
                return
            fill_price = (
                min(fill_price, order.limit_price) if order.side == "buy" else max(fill_price, order.limit_price)
            )
        position = self._position_qty(order.symbol)
        if order.reduce_only:
            reducible = -position if order.side == "buy" else position
            if reducible <= 0:
                order.status, order.reason = "rejected", "reduce-only order would not reduce the position"
                order.save(update_fields=["status", "reason", "updated_at"])
                raise OrderRejected(order.reason)
            order.qty = min(order.qty, reducible)
        notional = order.qty * fill_price
        cash = self._cash_locked()
        if order.side == "buy" and not order.reduce_only and self.market_type == "spot":
            if notional * (1 + self.fee_rate) > cash.total:
                raise OrderRejected(f"insufficient funds: {notional:.2f} {self.quote} needed, {cash.total:.2f} free")
        if self.market_type != "spot" and not order.reduce_only:
            self._check_margin(order, position, fill_price, cash.total)
        if order.side == "sell" and self.market_type == "spot" and order.qty > position and not order.reduce_only:
            raise OrderRejected(f"insufficient balance: selling {order.qty}, holding {position}")
        fee = notional * self.fee_rate
        if not order.scratch:
            cash.total += (-notional if order.side == "buy" else notional) - fee
            cash.save(update_fields=["total"])
        order.status, order.filled, order.average, order.fee = "filled", order.qty, fill_price, fee
        order.save(update_fields=["status", "filled", "average", "fee", "qty", "updated_at"])

    def _cash_locked(self):
        from execution.models import PaperBalance

        balance, _ = PaperBalance.objects.select_for_update().get_or_create(
            account_id=self.account_id,
            currency=self.quote,
            defaults={"total": self.account.paper_starting_balance},
        )
        return balance

    def _position_qty(self, symbol: str) -> Decimal:
        from execution.models import PaperOrder

        rows = (
            PaperOrder.objects.filter(account_id=self.account_id, symbol=symbol, filled__gt=0, scratch=False)
            .values("side")
            .annotate(total=Sum("filled"))
        )
        qty = Decimal("0")
        for row in rows:
            qty += row["total"] if row["side"] == "buy" else -row["total"]
        return qty

    def _state(self, order) -> OrderState:
        return OrderState(
            client_order_id=order.client_order_id,
            exchange_order_id=f"paper-{order.pk}",
            status=order.status,
            filled=order.filled,
            average=order.average,
            fee=order.fee,
            fee_currency=self.quote,
            amount=order.qty,
            reason=order.reason,
            raw={"paper": True, "status": order.status},
        )

    def find_order(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        from execution.models import PaperOrder

        order = PaperOrder.objects.filter(account_id=self.account_id, client_order_id=client_order_id).first()
        if order is None:
            return None
        protective = order.order_type in self._PROTECTIVE_TYPES.values()
        if order.status == "open" and not protective and (mark := self._mark(symbol)) is not None:
            try:
                with transaction.atomic():
                    order = PaperOrder.objects.select_for_update().get(pk=order.pk)
                    if order.status == "open":
                        self._check_and_fill(order, mark)
            except OrderRejected:
                order.refresh_from_db()
        return self._state(order)

    def cancel_order(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        from execution.models import PaperOrder

        updated = PaperOrder.objects.filter(
            account_id=self.account_id, client_order_id=client_order_id, status="open"
        ).update(status="cancelled")
        if (
            not updated
            and not PaperOrder.objects.filter(account_id=self.account_id, client_order_id=client_order_id).exists()
        ):
            raise OrderNotFound(client_order_id)
        return self.find_order(symbol=symbol, client_order_id=client_order_id)

    # --- protective orders: resting here, triggered by the prices this exchange sees ------

    _PROTECTIVE_TYPES = {"stop_loss": "stop", "take_profit": "take", "trailing_stop": "trail"}

    def create_protective(
        self,
        *,
        symbol,
        kind,
        side,
        qty,
        trigger_price,
        trail_percent=None,
        trail_distance=None,
        client_order_id,
        before_send=None,
    ) -> OrderState:
        from execution.models import PaperOrder

        if before_send is not None:
            before_send()
        position = self._position_qty(symbol)
        if (side == "sell" and position <= 0) or (side == "buy" and position >= 0):
            raise OrderRejected("reduce-only protective order: there is no position it would reduce")
        mark = self._mark(symbol)
        if kind != "trailing_stop" and mark is not None and self._crossed(kind, side, trigger_price, mark):
            raise OrderRejected(f"the trigger price {trigger_price} is already crossed (last price {mark})")
        best = mark
        if kind == "trailing_stop" and best is None:
            best = self._mark_or_last(symbol, None) or None
        try:
            with transaction.atomic():
                order = PaperOrder.objects.create(
                    account_id=self.account_id,
                    client_order_id=client_order_id,
                    symbol=symbol,
                    side=side,
                    order_type=self._PROTECTIVE_TYPES[kind],
                    reduce_only=True,
                    qty=qty,
                    status="open",
                    trigger_price=trigger_price if kind != "trailing_stop" else self._trail_level(side, best,
                                                                                                   trail_percent,
                                                                                                   trail_distance),
                    trail_percent=trail_percent,
                    trail_distance=trail_distance,
                    best_price=best,
                )  # fmt: skip
        except IntegrityError as exc:
            raise OrderRejected(f"duplicate client order id {client_order_id}") from exc
        return self._state(order)

    @staticmethod
    def _crossed(kind: str, side: str, trigger, price: Decimal) -> bool:
        """A sell stop (guarding a long) fires at or below its trigger, a sell take-profit at
        or above; a buy (guarding a short) the other way round."""
        if trigger is None:
            return False
        falling = (kind in ("stop_loss", "stop", "trailing_stop", "trail")) == (side == "sell")
        return price <= trigger if falling else price >= trigger

    @staticmethod
    def _trail_level(side: str, best, percent, distance):
        if best is None:
            return None
        if percent is not None:
            gap = best * Decimal(percent) / Decimal(100)
        else:
            gap = Decimal(distance or 0)
        return best - gap if side == "sell" else best + gap

    def prices_seen(self, *, symbol: str, price: Decimal) -> None:
        """Move the resting protective orders of `symbol` along `price`: trail, and fire
        those it crosses (each closes at market, reduce-only)."""
        from execution.models import PaperOrder

        resting = PaperOrder.objects.filter(
            account_id=self.account_id, symbol=symbol, status="open", order_type__in=["stop", "take", "trail"]
        )
        for order_id in resting.values_list("pk", flat=True):
            with transaction.atomic():
                order = PaperOrder.objects.select_for_update().filter(pk=order_id, status="open").first()
                if order is None:
                    continue
                if order.order_type == "trail":
                    better = order.best_price is None or (
                        price > order.best_price if order.side == "sell" else price < order.best_price
                    )
                    if better:
                        order.best_price = price
                        order.trigger_price = self._trail_level(
                            order.side, price, order.trail_percent, order.trail_distance
                        )
                        order.save(update_fields=["best_price", "trigger_price", "updated_at"])
                if not self._crossed(order.order_type, order.side, order.trigger_price, price):
                    continue
                try:
                    with transaction.atomic():
                        self._check_and_fill(order, price)
                except OrderRejected:
                    # Nothing left to reduce (the position was closed otherwise): the venues
                    # cancel such a trigger order.
                    PaperOrder.objects.filter(pk=order.pk).update(
                        status="cancelled", reason="triggered with no position to reduce"
                    )

    def find_protective(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        from execution.models import PaperOrder

        if (mark := self._mark(symbol)) is not None:
            self.prices_seen(symbol=symbol, price=mark)
        order = PaperOrder.objects.filter(account_id=self.account_id, client_order_id=client_order_id).first()
        return self._state(order) if order is not None else None

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        from execution.models import PaperOrder

        rows = PaperOrder.objects.filter(account_id=self.account_id, status="open", scratch=self.scratch)
        if symbol:
            rows = rows.filter(symbol=symbol)
        return [self._state(o) for o in rows]

    def fetch_positions(self, symbols: list[str] | None = None) -> list[PositionInfo]:
        from execution.models import PaperOrder

        wanted = PaperOrder.objects.filter(account_id=self.account_id, filled__gt=0, scratch=False)
        if symbols:
            wanted = wanted.filter(symbol__in=symbols)
        result = []
        for symbol in sorted(set(wanted.values_list("symbol", flat=True))):
            qty = self._position_qty(symbol)
            if qty:
                mark = self._mark(symbol)
                result.append(PositionInfo(symbol=symbol, qty=qty, mark_price=mark))
        return result

    def _check_margin(self, order, position: Decimal, price: Decimal, cash: Decimal) -> None:
        """A derivatives order, long or short, needs initial margin (notional / leverage) for
        the part that opens or adds to a position; what it closes needs none and frees what
        the closed part held. Refused, as a venue would, when equity minus the margin held by
        open positions does not cover it."""
        closable = max(-position, Decimal("0")) if order.side == "buy" else max(position, Decimal("0"))
        opening = order.qty - min(order.qty, closable)
        if opening <= 0:
            return
        leverage = Decimal(self.leverage.get(order.symbol, 1))
        equity, held = cash, Decimal("0")
        for row in self.fetch_positions():
            mark = self._mark_or_last(row.symbol, row.mark_price)
            equity += row.qty * mark
            size = abs(row.qty)
            if row.symbol == order.symbol:
                size -= min(order.qty, closable)  # closed by this order
            held += size * mark / Decimal(self.leverage.get(row.symbol, 1))
        required = opening * price / leverage
        if required > equity - held:
            raise OrderRejected(
                f"insufficient margin: {required:.2f} {self.quote} needed at {leverage}x, "
                f"{equity - held:.2f} free (equity {equity:.2f}, {held:.2f} held by open positions)"
            )

    def _mark_or_last(self, symbol: str, mark: Decimal | None) -> Decimal:
        if mark is not None:
            return mark
        from execution.models import PaperOrder

        last = (
            PaperOrder.objects.filter(account_id=self.account_id, symbol=symbol, average__isnull=False, scratch=False)
            .order_by("-id")
            .first()
        )
        return last.average if last else Decimal("0")

    def _equity(self, cash: Decimal) -> Decimal:
        equity = cash
        for position in self.fetch_positions():
            equity += position.qty * self._mark_or_last(position.symbol, position.mark_price)
        return equity

    def fetch_equity(self, currency: str = "USDT") -> Decimal:
        from execution.models import PaperBalance

        balance = PaperBalance.objects.filter(account_id=self.account_id, currency=self.quote).first()
        cash = balance.total if balance else self.account.paper_starting_balance
        return self._equity(cash)

    def set_leverage(self, *, symbol: str, leverage: int) -> None:
        self.leverage[symbol] = leverage
