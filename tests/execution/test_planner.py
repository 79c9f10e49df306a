"""Sizing, rounding, minimums, max position and order pricing, as a trader configures them."""

from decimal import Decimal

import pytest

from execution.engine.plan import NothingToDo, PlanError, plan_legs
from execution.exchanges.base import MarketInfo, tradingview_to_ccxt
from strategies.models import Strategy

BTC = MarketInfo(
    symbol="BTC/USDT:USDT",
    base="BTC",
    quote="USDT",
    kind="linear",
    amount_step=Decimal("0.001"),
    price_step=Decimal("0.1"),
    min_qty=Decimal("0.001"),
    min_notional=Decimal("5"),
)


def strategy(**fields) -> Strategy:
    return Strategy(strategy_id="s", **fields)


def plan(
    action="buy",
    position="0",
    price="65000",
    volume="0.01",
    market=BTC,
    market_position="",
    market_position_size=None,
    **fields,
):
    return plan_legs(
        market_position=market_position,
        market_position_size=market_position_size,
        action=action,
        strategy=strategy(**fields),
        market=market,
        price=Decimal(price),
        volume=Decimal(volume),
        position=Decimal(position),
        equity=Decimal("10000"),
        spot=market.kind == "spot",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sizing_mode": "signal"}, "0.012"),
        ({"sizing_mode": "fixed_base", "size_value": Decimal("0.0257")}, "0.025"),
        ({"sizing_mode": "fixed_quote", "size_value": Decimal("100")}, "0.001"),
        ({"sizing_mode": "percent_equity", "size_value": Decimal("13")}, "0.02"),
    ],
)
def test_sizing_modes_round_down_to_the_lot_step(fields, expected):
    (leg,) = plan(volume="0.0129", **fields)
    assert leg.qty == Decimal(expected)


def test_size_below_the_market_minimum_is_refused_with_the_numbers():
    with pytest.raises(PlanError, match="below the market minimum 0.001"):
        plan(volume="0.0004")


def test_order_value_below_min_notional_is_refused():
    with pytest.raises(PlanError, match="below the market minimum 5 USDT"):
        plan(price="1000", volume="0.004")


def test_max_position_caps_the_entry_and_then_stops_adding():
    (leg,) = plan(position="0.015", volume="0.01", max_position=Decimal("0.02"))
    assert leg.qty == Decimal("0.005")
    with pytest.raises(NothingToDo, match="maximum position"):
        plan(position="0.02", max_position=Decimal("0.02"))


def test_opposite_signal_reverse_close_only_and_ignore():
    close, entry = plan(action="sell", position="0.01", on_opposite="reverse")
    assert (close.side, close.qty, close.reduce_only, entry.side, entry.reduce_only) == (
        "sell",
        Decimal("0.01"),
        True,
        "sell",
        False,
    )
    (only,) = plan(action="sell", position="0.01", on_opposite="close_only")
    assert only.purpose == "close"
    with pytest.raises(NothingToDo, match="ignores"):
        plan(action="sell", position="0.01", on_opposite="ignore")


def test_limit_offset_and_marketable_limit_prices():
    (limit,) = plan(order_type="limit", limit_offset_bps=Decimal("10"))
    assert (limit.order_type, limit.limit_price) == ("limit", Decimal("64935.0"))
    (capped,) = plan(action="sell", order_type="marketable_limit", max_slippage_bps=Decimal("20"))
    assert capped.limit_price == Decimal("64870.0")


def test_closes_use_the_held_quantity_and_skip_when_flat():
    (leg,) = plan(action="close_short", position="-0.03")
    assert (leg.side, leg.qty, leg.reduce_only) == ("buy", Decimal("0.03"), True)
    with pytest.raises(NothingToDo):
        plan(action="close_long", position="0")


@pytest.mark.parametrize(
    ("ticker", "market_type", "symbol"),
    [
        ("BTCUSDT.P", "spot", "BTC/USDT:USDT"),
        ("BYBIT:BTCUSDT.P", "linear", "BTC/USDT:USDT"),
        ("BTCUSDT", "spot", "BTC/USDT"),
        ("BTCUSDT", "linear", "BTC/USDT:USDT"),
        ("1000PEPEUSDT.P", "linear", "1000PEPE/USDT:USDT"),
        ("ETHUSDC", "spot", "ETH/USDC"),
    ],
)
def test_tradingview_tickers_map_to_ccxt_symbols(ticker, market_type, symbol):
    assert tradingview_to_ccxt(ticker, market_type) == symbol


def test_a_pine_strategy_exit_sent_as_sell_with_market_position_flat_only_closes():
    (leg,) = plan(action="sell", position="1", volume="1", market_position="flat")
    assert (leg.side, leg.qty, leg.reduce_only, leg.purpose) == ("sell", Decimal("1.000"), True, "close")


def test_a_pine_reversal_opens_only_the_new_position_size():
    close, entry = plan(
        action="buy", position="-1", volume="2", market_position="long", market_position_size=Decimal("1")
    )
    assert (close.side, close.qty, close.reduce_only) == ("buy", Decimal("1.000"), True)
    assert (entry.side, entry.qty, entry.reduce_only) == ("buy", Decimal("1.000"), False)


def test_a_sell_while_tradingview_stays_long_is_a_partial_exit():
    (leg,) = plan(action="sell", position="0.03", volume="0.01", market_position="long")
    assert (leg.side, leg.qty, leg.reduce_only) == ("sell", Decimal("0.010"), True)


def test_without_market_position_the_configured_opposite_rule_applies():
    close, entry = plan(action="sell", position="0.01", volume="0.02")
    assert (close.qty, entry.qty) == (Decimal("0.01"), Decimal("0.02"))


def test_okx_style_contract_sizes_become_base_coin_rules():
    from execution.exchanges.ccxt_gateway import contract_size, market_info

    okx_swap = {
        "base": "BTC",
        "quote": "USDT",
        "spot": False,
        "contract": True,
        "contractSize": 0.01,
        "precision": {"amount": 1, "price": 0.1},
        "limits": {"amount": {"min": 1}, "cost": {}},
    }
    assert contract_size(okx_swap) == Decimal("0.01")
    info = market_info("BTC/USDT:USDT", okx_swap)
    assert (info.amount_step, info.min_qty) == (Decimal("0.01"), Decimal("0.01"))
    assert info.round_qty(Decimal("0.057")) == Decimal("0.05")  # five contracts
    bybit_linear = {**okx_swap, "contractSize": 1, "precision": {"amount": 0.001}, "limits": {"amount": {"min": 0.001}}}
    assert contract_size(bybit_linear) == 1
    assert contract_size({"spot": True}) == 1


def test_a_fills_fee_counts_in_the_quote_currency():
    from decimal import Decimal

    from execution.engine.ledger import fee_in_quote as _fee_in_quote

    price = Decimal("65000")
    assert _fee_in_quote("BTC/USDT:USDT", Decimal("0.39"), "USDT", price) == Decimal("0.39")  # settlement
    assert _fee_in_quote("BTC/USDT", Decimal("0.39"), "usdt", price) == Decimal("0.39")  # spot quote
    assert _fee_in_quote("BTC/USDT", Decimal("0.00001"), "BTC", price) == Decimal("0.65")  # base, at the fill
    assert _fee_in_quote("BTC/USDT", Decimal("0.001"), "BNB", price) == 0  # no price for it: not counted
    assert _fee_in_quote("BTC/USDT", Decimal("0"), "", price) == 0
