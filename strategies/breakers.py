"""Risk breakers: limits that engage a kill switch by themselves when crossed.

A strategy and an exchange account each carry the same five limits (empty = off). The
engine checks them (execution/engine/breakers.py): before each send for what an order would
cross itself (its notional, the orders of the last minute), and after an order is final for
what its outcome crosses (the day's realised loss, losing trades or refused orders in a row).
Crossing one engages the strategy's or the account's kill switch, with the breaker as the
audited actor, until an operator resumes it; a resume starts each count afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.validators import MinValueValidator
from django.db import models


@dataclass(frozen=True)
class Breaker:
    name: str  # the audited actor is "breaker:<name>"
    field: str
    label: str


BREAKERS = (
    Breaker("daily_loss", "breaker_max_daily_loss", "realised loss today"),
    Breaker("losing_trades", "breaker_max_losing_trades", "losing trades in a row"),
    Breaker("failed_orders", "breaker_max_failed_orders", "refused or failed orders in a row"),
    Breaker("orders_per_minute", "breaker_max_orders_per_minute", "orders in one minute"),
    Breaker("order_notional", "breaker_max_order_notional", "notional of one order"),
)
BREAKER_FIELDS = tuple(b.field for b in BREAKERS)


class BreakerLimits(models.Model):
    """The five breaker limits, shared by Strategy and ExchangeAccount."""

    breaker_max_daily_loss = models.DecimalField(
        "max realised loss per day",
        max_digits=30,
        decimal_places=8,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="In the quote currency (e.g. USDT), closing trades net of their fees since 00:00 UTC. Empty: off.",
    )
    breaker_max_losing_trades = models.PositiveIntegerField(
        "max losing trades in a row",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Closing orders with a net loss, one after another. Empty: off.",
    )
    breaker_max_failed_orders = models.PositiveIntegerField(
        "max refused or failed orders in a row",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Orders the exchange refused (or never received), one after another. Empty: off.",
    )
    breaker_max_orders_per_minute = models.PositiveIntegerField(
        "max orders per minute",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="An order that would be one more within 60 s is refused before it is sent. Empty: off.",
    )
    breaker_max_order_notional = models.DecimalField(
        "max notional per order",
        max_digits=30,
        decimal_places=8,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Quantity × price in the quote currency; a larger opening order is refused before it is sent."
        " Empty: off.",
    )

    class Meta:
        abstract = True

    @property
    def has_breakers(self) -> bool:
        return any(getattr(self, f) is not None for f in BREAKER_FIELDS)
