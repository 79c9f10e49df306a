"""Money views read from the fills: each fill's realised P&L and fee, running P&L curves per
strategy and per account, and unrealised P&L at the last known price. Read-only (the console,
the CSV exports and Telegram's /positions use it); nothing here calls an exchange.

A fill's realised P&L is found by replaying the fills before it with the ledger's own rule
(`execution.engine.ledger`: weighted average entry, a close realises (price − entry) × closed
quantity, a flip re-opens at the fill's price), so the totals here equal the positions' own
`realized_pnl` for as long as reconcile has not adopted an exchange quantity by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import OuterRef, Subquery

from .engine.ledger import fee_in_quote
from .models import Fill, Position

ZERO = Decimal("0")
# A replay reads at most this many fills; past them P&L is not drawn rather than guessed. A
# signal's page replays its own book on every view (about 0.5 s per 40,000 fills here); the
# dashboard's curves replay everything, once per new fill (cached).
SIGNAL_REPLAY_LIMIT = 20_000
REPLAY_LIMIT = 50_000


@dataclass
class TradePnl:
    fill_id: int
    order_id: int
    signal_id: int
    strategy_id: int
    account_id: int
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    at: datetime
    fee: Decimal  # in the quote currency
    realized: Decimal  # from prices alone, on the part this fill closed
    position_after: Decimal

    @property
    def net(self) -> Decimal:
        return self.realized - self.fee


@dataclass
class _Book:
    qty: Decimal = ZERO
    avg: Decimal | None = None


_FIELDS = (
    "id",
    "order_id",
    "order__signal_id",
    "order__strategy_id",
    "order__account_id",
    "order__symbol",
    "order__side",
    "qty",
    "price",
    "fee",
    "fee_currency",
    "filled_at",
)


def _held(symbol: str, side: str, qty: Decimal, fee: Decimal, fee_currency: str) -> Decimal:
    # As the ledger: a spot buy's fee taken in the base coin leaves less of it to sell later.
    if fee_currency and ":" not in symbol and side == "buy" and fee_currency == symbol.split("/")[0]:
        return max(qty - fee, ZERO)
    return qty


def replay(rows: Iterable[tuple], *, by_strategy: bool = True) -> list[TradePnl]:
    """Apply fills (rows of `_FIELDS`, in booking order) to a book per (account, [strategy,]
    symbol) and return each one's realised P&L."""
    books: dict[tuple, _Book] = {}
    out: list[TradePnl] = []
    for fid, oid, sig, strat, acct, symbol, side, qty, price, fee, fee_ccy, at in rows:
        book = books.setdefault((acct, strat if by_strategy else None, symbol), _Book())
        signed = _held(symbol, side, qty, fee, fee_ccy)
        signed = signed if side == "buy" else -signed
        realized = ZERO
        old, new = book.qty, book.qty + signed
        if old == 0 or (old > 0) == (signed > 0):
            base = (book.avg or price) * abs(old)
            book.avg = (base + price * abs(signed)) / abs(new) if new else None
        else:
            closed = min(abs(old), abs(signed))
            realized = (price - (book.avg or price)) * closed * (1 if old > 0 else -1)
            if new == 0:
                book.avg = None
            elif (new > 0) != (old > 0):
                book.avg = price
        book.qty = new
        out.append(
            TradePnl(
                fill_id=fid,
                order_id=oid,
                signal_id=sig,
                strategy_id=strat,
                account_id=acct,
                symbol=symbol,
                side=side,
                qty=qty,
                price=price,
                at=at,
                fee=fee_in_quote(symbol, fee, fee_ccy, price),
                realized=realized,
                position_after=new,
            )
        )
    return out


def _fills(**filters: Any):
    return Fill.objects.filter(**filters).order_by("id").values_list(*_FIELDS)


def _bounded(queryset, limit: int) -> list[tuple] | None:
    """The rows, or None past `limit` (counted first: far cheaper than fetching them)."""
    if queryset.order_by()[: limit + 1].count() > limit:
        return None
    return list(queryset)


def all_fills_for_replay() -> list[tuple] | None:
    """Every fill, in booking order; None past REPLAY_LIMIT."""
    return _bounded(_fills(), REPLAY_LIMIT)


def signal_trades(*, signal: Any) -> list[TradePnl] | None:
    """The fills of one signal with their realised P&L and fees; None when the history to
    replay is longer than SIGNAL_REPLAY_LIMIT fills."""
    own = list(Fill.objects.filter(order__signal_id=signal.pk).values_list("id", "order__symbol", "order__account_id"))
    if not own:
        return []
    rows = _bounded(
        _fills(
            order__strategy_id=signal.strategy_id,
            order__symbol__in={s for _, s, _ in own},
            order__account_id__in={a for _, _, a in own},
            id__lte=max(fid for fid, _, _ in own),
        ),
        SIGNAL_REPLAY_LIMIT,
    )
    if rows is None:
        return None
    return [t for t in replay(rows) if t.signal_id == signal.pk]


def pnl_curves(*, by: str, rows: list[tuple] | None = None) -> dict[int, list[tuple[datetime, Decimal]]] | None:
    """Cumulative net realised P&L (after fees) after each fill, per strategy (`by` =
    "strategy") or per account ("account": its net position, every strategy together);
    None past REPLAY_LIMIT fills. `rows`: the fills already read (`all_fills_for_replay`)."""
    rows = all_fills_for_replay() if rows is None else rows
    if rows is None:
        return None
    curves: dict[int, list[tuple[datetime, Decimal]]] = {}
    totals: dict[int, Decimal] = {}
    for trade in replay(rows, by_strategy=by == "strategy"):
        owner = trade.strategy_id if by == "strategy" else trade.account_id
        totals[owner] = totals.get(owner, ZERO) + trade.net
        curves.setdefault(owner, []).append((trade.at, totals[owner]))
    return curves


Curves = dict[int, list[tuple[datetime, float]]]


def pnl_curves_cached(*, points: int = 400) -> dict[str, Curves | None]:
    """{"strategy": curves, "account": curves}, each thinned to about `points` per owner
    (None past REPLAY_LIMIT fills), kept in Redis until a new fill is booked (fills are only
    ever added), so the dashboard replays the history once, not on every view."""
    import json

    from tvtrader.redisconn import key, redis_client

    latest = Fill.objects.order_by("-id").values_list("id", flat=True).first() or 0
    cache_key = key("pnl", "curves", latest)
    try:
        cached = redis_client().get(cache_key)
    except Exception:
        cached = None
    if cached:
        return {
            by: None
            if data is None
            else {int(o): [(datetime.fromisoformat(t), v) for t, v in pts] for o, pts in data.items()}
            for by, data in json.loads(cached).items()
        }
    rows = all_fills_for_replay()
    result: dict[str, Curves | None] = {}
    for by in ("strategy", "account"):
        curves = None if rows is None else pnl_curves(by=by, rows=rows)
        if curves is None:
            result[by] = None
            continue
        result[by] = {}
        for owner, pts in curves.items():
            stride = max(1, len(pts) // points)
            kept = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
            result[by][owner] = [(t, float(v)) for t, v in kept]
    try:
        payload = {
            by: None if c is None else {o: [(t.isoformat(), v) for t, v in p] for o, p in c.items()}
            for by, c in result.items()
        }
        redis_client().set(cache_key, json.dumps(payload), ex=3600)
    except Exception:
        pass
    return result


def with_marks(positions):
    """Annotate positions with the last known price of their market: the latest fill on the
    account and symbol (`mark_fill`, `mark_fill_at`) and the latest alert price of the
    strategy (`mark_alert`, `mark_alert_at`). `position_mark` picks the newer."""
    from signals.models import Signal

    last_fill = Fill.objects.filter(
        order__account_id=OuterRef("account_id"), order__symbol=OuterRef("symbol")
    ).order_by("-id")
    last_alert = Signal.objects.filter(strategy_id=OuterRef("strategy_id"), price__isnull=False).order_by("-id")
    return positions.annotate(
        mark_fill=Subquery(last_fill.values("price")[:1]),
        mark_fill_at=Subquery(last_fill.values("filled_at")[:1]),
        mark_alert=Subquery(last_alert.values("price")[:1]),
        mark_alert_at=Subquery(last_alert.values("received_at")[:1]),
    )


def position_mark(position: Position) -> tuple[Decimal | None, datetime | None]:
    """(price, when) of the newest known price for an annotated position."""
    candidates = [
        (getattr(position, "mark_fill_at", None), getattr(position, "mark_fill", None)),
        (getattr(position, "mark_alert_at", None), getattr(position, "mark_alert", None)),
    ]
    known = [(at, price) for at, price in candidates if at is not None and price is not None]
    if not known:
        return None, None
    at, price = max(known, key=lambda c: c[0])
    return Decimal(price), at


def unrealized_pnl(position: Position) -> Decimal | None:
    """(last known price − average entry) × signed quantity; None when flat or unpriced."""
    mark, _ = position_mark(position)
    if mark is None or position.avg_price is None or not position.qty:
        return None
    return (mark - position.avg_price) * position.qty
