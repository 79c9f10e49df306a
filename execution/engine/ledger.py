"""Ledger: what the venue says about an order, recorded — its status, each new fill (a `Fill`
row, idempotent per cumulative filled quantity), the account's and the strategy's positions,
fees and the latency chain. Called on an order's reply, on every look at it afterwards, by
reconcile and by operator verbs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from execution.exchanges import OrderState
from execution.models import Fill, Order, Position

from . import statements

BPS = Decimal("10000")
STATUS_MAP = {
    "open": Order.Status.OPEN,
    "partially_filled": Order.Status.PARTIALLY_FILLED,
    "filled": Order.Status.FILLED,
    "cancelled": Order.Status.CANCELLED,
    "rejected": Order.Status.REJECTED,
}


def order_apply_state(
    *, order: Order, state: OrderState, book_positions: bool = True, reply: bool = False, acked_at=None
) -> str:
    """Record a venue's view of an order: status, new fills (as deltas of the cumulative
    filled quantity, each a `Fill` row, idempotent), positions and the latency chain.
    Returns the order's status afterwards. A few statements (engine.statements, "the
    ledger"), not the ORM: this runs for every order, often twice (reply, then fill)."""
    now = timezone.now()
    position_fill: tuple[Decimal, Decimal, Decimal] | None = None
    with transaction.atomic():
        current = statements.order_lock(order.pk)
        updates: dict[str, Any] = {}
        if state.exchange_order_id and not current.exchange_order_id:
            updates["exchange_order_id"] = state.exchange_order_id[:64]
        if current.acked_at is None:
            updates["acked_at"] = acked_at or now
        replies = list(current.replies or [])
        if len(replies) < 20:
            replies.append(
                {"at": now.isoformat(), "status": state.status, "filled": str(state.filled), "info": redact(state.raw)}
            )
            updates["replies"] = replies
        delta = state.filled - current.filled_qty
        if delta > 0:
            prior_cost = (current.avg_price or Decimal("0")) * current.filled_qty
            total_cost = (state.average or current.avg_price or Decimal("0")) * state.filled
            fill_price = (total_cost - prior_cost) / delta if total_cost else (state.average or Decimal("0"))
            fee_delta = max(state.fee - current.fee, Decimal("0"))
            statements.fill_insert(
                Fill(
                    order_id=current.pk,
                    trade_id=f"{state.exchange_order_id or current.client_order_id}:{state.filled}",
                    qty=delta,
                    price=fill_price,
                    fee=fee_delta,
                    fee_currency=state.fee_currency,
                    filled_at=now,
                )
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
                    fee_in_quote(current.symbol, fee_delta, state.fee_currency, fill_price),
                )
        status = STATUS_MAP.get(state.status, current.status)
        if status != current.status and current.status not in Order.TERMINAL_STATUSES:
            updates["status"] = status
            if status in Order.TERMINAL_STATUSES:
                updates["closed_at"] = now
            if status == Order.Status.REJECTED and state.reason:
                updates["reason"] = state.reason[:2000]
        elif current.status == Order.Status.UNKNOWN:
            updates["status"] = status
        statements.order_and_signal_update(order=current, updates=updates, now=now, first_fill=delta > 0)
        if position_fill is not None:
            # Last, right before the commit: the account-level position row of a symbol is
            # shared by every strategy trading it, so its lock must be held as briefly as possible.
            _position_apply(current, *position_fill)
    return updates.get("status", current.status)


def redact(info: dict[str, Any]) -> dict[str, Any]:
    hidden = ("key", "secret", "sign", "passphrase", "password", "token")
    return {k: ("[redacted]" if any(h in str(k).lower() for h in hidden) else v) for k, v in list(info.items())[:60]}


def fee_in_quote(symbol: str, fee: Decimal, currency: str, price: Decimal) -> Decimal:
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
    rows = statements.positions_lock(account_id=order.account_id, strategy_id=order.strategy_id, symbol=order.symbol)
    changed: list[Position] = []
    for strategy_id in (None, order.strategy_id):
        row = rows[strategy_id]
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
        changed.append(row)
    statements.positions_save(changed)
