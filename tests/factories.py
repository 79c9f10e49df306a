"""factory_boy factories for the domain."""

from decimal import Decimal

import factory
from django.utils import timezone

from execution.models import ExchangeAccount
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
