"""Ledger: what the venue says about an order, recorded — its status, each new fill (a `Fill`
row, idempotent per cumulative filled quantity), the account's and the strategy's positions,
fees and the latency chain. Called on an order's reply, on every look at it afterwards, by
reconcile and by operator verbs.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from execution.exchanges import OrderState
from execution.models import Fill, Order, Position

from . import breakers, statements

BPS = Decimal("10000")
PROTECTION_LETTERS = {"stop_loss": "s", "take_profit": "t", "trailing_stop": "r"}
PROTECTION_WORDS = {"stop_loss": "stop-loss", "take_profit": "take-profit", "trailing_stop": "trailing stop"}

#: Called after the commit that wrote protective orders to place (PENDING) or to cancel
#: (cancel requested): `listener(place=[ids], cancel=[ids])`. The protection stage
#: (engine.protect) registers itself; with no listener the sweeper finds the rows.
_protection_listener: Callable[..., None] | None = None


def protection_listener_set(listener: Callable[..., None] | None) -> None:
    global _protection_listener
    _protection_listener = listener


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
    to_place: list[int] = []
    to_cancel: list[int] = []
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
            if status == Order.Status.FILLED and current.protection:
                updates["reason"] = f"closed by {PROTECTION_WORDS[current.protection]}"
        elif current.status == Order.Status.UNKNOWN:
            updates["status"] = status
        statements.order_and_signal_update(order=current, updates=updates, now=now, first_fill=delta > 0)
        if delta > 0 and book_positions and current.protection_spec and not current.protection:
            to_place = _protection_intent(current, filled=state.filled, average=updates["avg_price"], now=now)
        if position_fill is not None:
            # Last, right before the commit: the account-level position row of a symbol is
            # shared by every strategy trading it, so its lock must be held as briefly as possible.
            held = _position_apply(current, *position_fill)
            signed = position_fill[0] if current.side == "buy" else -position_fill[0]
            if (held - signed) * signed < 0:
                # The fill reduced (or flipped) the strategy's position: protection guarding
                # what is gone goes. A fill that opened or added cannot orphan any.
                to_cancel = _protection_orphans(current, held, now=now)
        if current.protection and updates.get("status") == Order.Status.FILLED:
            to_cancel += _protection_siblings(current, now=now)
    if (to_place or to_cancel) and _protection_listener is not None:
        _protection_listener(place=to_place, cancel=to_cancel)
    status = updates.get("status", current.status)
    if book_positions and "status" in updates and status in Order.TERMINAL_STATUSES:
        breakers.order_final(current.pk)  # after the commit: what this outcome crossed
    return status


def protective_client_id(entry: Order, kind: str, generation: int) -> str:
    """Deterministic from the entry's (signal and leg) id, the kind and the generation:
    `<entry id>` + s/t/r + generation, letters and digits only (valid on every venue)."""
    return f"{entry.client_order_id}{PROTECTION_LETTERS[kind]}{generation}"


def _protection_intent(entry: Order, *, filled: Decimal, average: Decimal, now) -> list[int]:
    """Inside the fill's transaction: one PENDING protective order per level of the entry's
    protection, for everything the entry has filled so far (a new generation each time a
    partial fill grows it; the earlier generation is cancelled once this one is live). The
    row is the durable intent: a worker killed before placing it leaves it for the sweeper."""
    spec = entry.protection_spec or {}
    long = entry.side == "buy"
    existing = list(
        Order.objects.filter(signal_id=entry.signal_id).values_list("leg", "protection", "generation", "protects_id")
    )
    next_leg = max(100, max((leg for leg, *_ in existing), default=0)) + 1
    rows: list[Order] = []
    for kind in ("stop_loss", "take_profit", "trailing_stop"):
        level = spec.get(kind)
        if not level:
            continue
        generation = 1 + max((g for _, k, g, p in existing if k == kind and p == entry.pk), default=0)
        trigger = trail_percent = trail_distance = None
        if "price" in level:
            trigger = Decimal(level["price"])
        elif kind == "trailing_stop":
            if "percent" in level:
                trail_percent = Decimal(level["percent"])
            else:
                trail_distance = Decimal(level["distance"])
        else:
            ratio = Decimal(level["percent"]) / Decimal(100)
            away = -ratio if (kind == "stop_loss") == long else ratio
            trigger = average * (1 + away)
        rows.append(
            Order(
                signal_id=entry.signal_id,
                strategy_id=entry.strategy_id,
                account_id=entry.account_id,
                leg=next_leg,
                purpose=Order.Purpose.CLOSE,
                protection=kind,
                protects_id=entry.pk,
                generation=generation,
                client_order_id=protective_client_id(entry, kind, generation),
                symbol=entry.symbol,
                side="sell" if long else "buy",
                order_type="market",
                reduce_only=True,
                requested_qty=filled,
                trigger_price=trigger,
                trail_percent=trail_percent,
                trail_distance=trail_distance,
                signal_price=trigger or average,
            )
        )
        next_leg += 1
    if not rows:
        return []
    if any(row.generation > 1 for row in rows):
        # An earlier generation never sent is simply superseded.
        Order.objects.filter(protects_id=entry.pk, status=Order.Status.PENDING).exclude(protection="").update(
            status=Order.Status.CANCELLED, reason="superseded before it was sent (the entry filled more)", closed_at=now
        )
    return [o.pk for o in Order.objects.bulk_create(rows)]


def _protection_siblings(order: Order, *, now) -> list[int]:
    """A protective order fired: the others guarding the same entry go (one cancels the
    others: a stop that closed the entry leaves no take-profit behind)."""
    siblings = (
        Order.objects.filter(protects_id=order.protects_id, cancel_requested_at=None)
        .exclude(pk=order.pk)
        .exclude(status__in=Order.TERMINAL_STATUSES)
    )
    siblings.filter(status=Order.Status.PENDING).update(
        status=Order.Status.CANCELLED, reason=f"not sent: the {PROTECTION_WORDS[order.protection]} fired", closed_at=now
    )
    ids = list(siblings.values_list("pk", flat=True))
    if ids:
        Order.objects.filter(pk__in=ids).update(cancel_requested_at=now)
    return ids


def _protection_orphans(order: Order, held: Decimal, *, now) -> list[int]:
    """Inside the fill's transaction: the strategy's protective orders on this market that
    guard a position it no longer holds (an exit, a reversal, or a sibling stop/take that
    fired) are cancelled — never sent yet: here; live: marked for cancelling at the venue."""
    guarding = (
        Order.objects.filter(
            strategy_id=order.strategy_id, account_id=order.account_id, symbol=order.symbol, cancel_requested_at=None
        )
        .exclude(protection="")
        .exclude(status__in=Order.TERMINAL_STATUSES)
        .exclude(pk=order.pk)
    )
    # A protective sell guards a long: orphaned once the strategy is flat or short here.
    if held > 0:
        orphans = guarding.filter(side="buy")
    elif held < 0:
        orphans = guarding.filter(side="sell")
    else:
        orphans = guarding
    orphans.filter(status=Order.Status.PENDING).update(
        status=Order.Status.CANCELLED, reason="not sent: the position it guarded was closed", closed_at=now
    )
    ids = list(orphans.values_list("pk", flat=True))
    if ids:
        Order.objects.filter(pk__in=ids).update(cancel_requested_at=now)
    return ids


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


def _position_apply(order: Order, qty: Decimal, price: Decimal, fee: Decimal = Decimal("0")) -> Decimal:
    """Apply one fill (and its fee, in the quote currency) to the account's net position and
    to the strategy's share of it; returns the strategy's position afterwards. What the fill
    realised for the strategy, net of its fee, is added to the order's `realized_pnl` (the
    breakers' losing trades and daily loss)."""
    signed = qty if order.side == "buy" else -qty
    realized: Decimal | None = None
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
            gain = (price - (row.avg_price or price)) * closed * direction
            row.realized_pnl += gain
            if strategy_id is not None:
                realized = gain
            if new == 0:
                row.avg_price = None
            elif (new > 0) != (old > 0):
                row.avg_price = price  # flipped through zero: the rest opened at this price
        row.qty = new
        row.fees_paid += fee
        changed.append(row)
    statements.positions_save(changed)
    if realized is not None:
        Order.objects.filter(pk=order.pk).update(
            realized_pnl=Coalesce(F("realized_pnl"), Decimal("0")) + (realized - fee)
        )
    return new
