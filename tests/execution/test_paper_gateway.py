"""The paper exchange refuses what a venue would: a derivatives order needs initial margin
for what it opens, long or short, beyond what open positions already hold."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

import pytest

from execution.exchanges.errors import OrderRejected
from execution.exchanges.paper import PaperGateway
from tests.factories import ExchangeAccountFactory

pytestmark = pytest.mark.django_db
_ids = count(1)


def order(gateway: PaperGateway, side: str, qty: str, *, price: str = "65000", reduce_only: bool = False):
    return gateway.create_order(
        symbol="BTC/USDT:USDT",
        side=side,
        order_type="market",
        qty=Decimal(qty),
        price=None,
        reduce_only=reduce_only,
        client_order_id=f"tvpaper{next(_ids)}",
        signal_price=Decimal(price),
    )


@pytest.fixture
def gateway():
    account = ExchangeAccountFactory(
        paper_starting_balance=Decimal("1000"), paper_slippage_bps=Decimal("0"), paper_fee_bps=Decimal("0")
    )
    return PaperGateway(account)


def test_a_short_needs_margin_like_a_long(gateway):
    assert order(gateway, "sell", "0.01").status == "filled"  # 650 USDT of margin out of 1000
    with pytest.raises(OrderRejected, match="insufficient margin: 650.00 USDT needed at 1x, 350.00 free"):
        order(gateway, "sell", "0.01")  # used to fill: shorts were never checked
    with pytest.raises(OrderRejected, match="insufficient margin"):
        order(gateway, "buy", "0.03")  # closes 0.01, opens 0.02: 1300 needed, 1000 free


def test_closing_needs_no_margin_and_frees_what_it_held(gateway):
    assert order(gateway, "buy", "0.015").status == "filled"  # 975 of 1000 held
    assert order(gateway, "sell", "0.015").status == "filled"  # closing: no margin needed
    assert order(gateway, "sell", "0.015").status == "filled"  # flat again: a short of the same size fits
    assert order(gateway, "buy", "0.015", reduce_only=True).status == "filled"


def test_leverage_divides_the_margin(gateway):
    gateway.set_leverage(symbol="BTC/USDT:USDT", leverage=5)
    assert order(gateway, "sell", "0.07").status == "filled"  # 4550 notional, 910 margin at 5x
    with pytest.raises(OrderRejected, match="needed at 5x"):
        order(gateway, "sell", "0.01")  # 130 more, 90 free
