""" "Replay on paper" shows what a run would send: for every kind of signal, the legs it
replays are exactly the legs the run then plans and sends (same planner, same inputs)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import Order, Position
from execution.services import signal_execute, signal_replay_on_paper
from signals.models import Signal
from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def replayed(signal: Signal) -> dict:
    replay = signal_replay_on_paper(signal=signal)
    return replay


def legs_of_run(signal: Signal) -> list[dict]:
    return [
        {
            "symbol": o.symbol,
            "side": o.side,
            "qty": str(o.requested_qty.normalize()),
            "type": o.order_type,
            "limit_price": str(o.limit_price.normalize()) if o.limit_price is not None else None,
            "reduce_only": o.reduce_only,
            "purpose": o.purpose,
        }
        for o in Order.objects.filter(signal=signal).order_by("leg")
    ]


def replay_then_run(strategy, **fields) -> tuple[dict, Signal]:
    signal = SignalFactory(strategy=strategy, **fields)
    replay = replayed(signal)
    signal_execute(signal_id=signal.pk)
    signal.refresh_from_db()
    return replay, signal


def assert_replay_is_the_run(replay: dict, signal: Signal) -> None:
    run_legs = legs_of_run(signal)
    if signal.status == Signal.Status.SKIPPED:
        assert replay["ok"] and replay["legs"] == [] and run_legs == []
        assert replay["reason"] == signal.reason  # "nothing to do: …", the same words
    elif signal.status == Signal.Status.FAILED and not run_legs:
        assert not replay["ok"] and replay["reason"] == signal.reason
    else:
        assert signal.status == Signal.Status.EXECUTED, signal.reason
        assert replay["ok"] and replay["legs"] == run_legs


def position(strategy, symbol="BTC/USDT:USDT") -> Decimal:
    row = Position.objects.filter(strategy=strategy, symbol=symbol).first()
    return row.qty if row else Decimal("0")


def test_replay_equals_the_run_across_entries_exits_reversals_close_all_and_refusals():
    account = ExchangeAccountFactory(paper_starting_balance=Decimal("100000"))
    strategy = StrategyFactory(account=account, on_opposite="reverse")
    steps = [
        # (alert fields, strategy changes before it, what the position is after)
        ({"action": "buy", "volume": Decimal("0.01")}, {}, Decimal("0.01")),  # entry from flat
        ({"action": "buy", "volume": Decimal("0.02")}, {}, Decimal("0.03")),  # adding
        ({"action": "sell", "volume": Decimal("0.01")}, {}, Decimal("-0.01")),  # reversal: close + open
        ({"action": "sell", "volume": Decimal("0.005")}, {}, Decimal("-0.015")),  # adding short
        ({"action": "close_long"}, {}, Decimal("-0.015")),  # nothing to do: not long
        ({"action": "close_short"}, {}, Decimal("0")),  # exit
        (  # marketable limit entry: the same capped price
            {"action": "buy", "volume": Decimal("0.01"), "price": Decimal("65000.37")},
            {"order_type": "marketable_limit", "max_slippage_bps": Decimal("25")},
            Decimal("0.01"),
        ),
        (  # Pine says flat: an exit, whatever the side
            {"action": "sell", "volume": Decimal("0.01"), "market_position": "flat"},
            {"order_type": "market"},
            Decimal("0"),
        ),
        (  # percent of the paper account's equity
            {"action": "buy", "volume": Decimal("1")},
            {"sizing_mode": "percent_equity", "size_value": Decimal("1")},
            None,
        ),
        (  # partial exit: Pine stays long after a sell
            {"action": "sell", "volume": Decimal("0.005"), "market_position": "long"},
            {"sizing_mode": "signal", "size_value": None},
            None,
        ),
        (  # a quote size below the market's minimum: refused by both, the same words
            {"action": "buy", "volume": Decimal("0.01")},
            {"sizing_mode": "fixed_quote", "size_value": Decimal("1")},
            None,
        ),
        (
            {"action": "buy", "ticker": "ETHUSDT.P", "price": Decimal("3000"), "volume": Decimal("0.1")},
            {"sizing_mode": "signal", "size_value": None},
            None,
        ),  # fmt: skip
        ({"action": "close_all", "volume": Decimal("0")}, {}, Decimal("0")),  # both markets flattened
    ]
    for n, (fields, changes, after) in enumerate(steps):
        for key, value in changes.items():
            setattr(strategy, key, value)
        strategy.save()
        fields = {"bar_time": None, **fields}
        replay, signal = replay_then_run(strategy, **fields)
        assert_replay_is_the_run(replay, signal)
        if after is not None:
            assert position(strategy) == after, f"step {n}: {fields}"
    close_all = Signal.objects.filter(strategy=strategy, action="close_all").get()
    assert {o.symbol for o in Order.objects.filter(signal=close_all)} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert position(strategy, "ETH/USDT:USDT") == 0
