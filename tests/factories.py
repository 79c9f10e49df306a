"""factory_boy factories for the domain."""

from decimal import Decimal

import factory
from django.utils import timezone

from execution.models import ExchangeAccount, Order
from signals.models import Signal
from strategies.models import Strategy


class ExchangeAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExchangeAccount

    label = factory.Sequence(lambda n: f"account-{n}")
    exchange = ExchangeAccount.Exchange.BYBIT
    mode = ExchangeAccount.Mode.PAPER
    market_type = ExchangeAccount.MarketType.LINEAR


class StrategyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Strategy

    strategy_id = factory.Sequence(lambda n: f"strat-{n}")
    name = factory.LazyAttribute(lambda o: f"Strategy {o.strategy_id}")
    account = factory.SubFactory(ExchangeAccountFactory)


class SignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Signal

    strategy = factory.SubFactory(StrategyFactory)
    strategy_key = factory.LazyAttribute(lambda o: o.strategy.strategy_id)
    status = Signal.Status.ACCEPTED
    action = "buy"
    ticker = "BTCUSDT.P"
    exchange = "BYBIT"
    price = Decimal("65000")
    volume = Decimal("0.01")
    received_at = factory.LazyFunction(timezone.now)
    committed_at = factory.LazyFunction(timezone.now)


class OrderFactory(factory.django.DjangoModelFactory):
    """One leg of a signal: a market buy of 0.01 BTC on the perpetual, pending. `.build()`
    gives an unsaved one (what the planner hands to the hot path's INSERT)."""

    class Meta:
        model = Order

    signal = factory.SubFactory(SignalFactory)
    strategy = factory.LazyAttribute(lambda o: o.signal.strategy)
    account = factory.LazyAttribute(lambda o: o.strategy.account)
    leg = 1
    purpose = Order.Purpose.OPEN
    client_order_id = factory.Sequence(lambda n: f"tvtest{n}l1")
    symbol = "BTC/USDT:USDT"
    side = Order.Side.BUY
    order_type = "market"
    requested_qty = Decimal("0.01")
    signal_price = factory.LazyAttribute(lambda o: o.signal.price)
