"""Query-string filters for the list endpoints (each backed by an index or a small table)."""

from __future__ import annotations

from datetime import UTC

import django_filters as filters
from django import forms
from django_filters.fields import IsoDateTimeField

from execution.models import Fill, Order, Position
from signals.models import Signal


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 (which Python
    accepts), and a date at the edge of the calendar cannot be shifted at all."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise forms.ValidationError("date out of range") from exc


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class SignalFilter(filters.FilterSet):
    strategy = filters.CharFilter(field_name="strategy__strategy_id", max_length=64)
    status = filters.ChoiceFilter(choices=Signal.Status.choices)
    action = filters.CharFilter(max_length=16)
    ticker = filters.CharFilter(max_length=64)
    is_test = filters.BooleanFilter()
    received_after = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Signal
        fields = ["strategy", "status", "action", "ticker", "is_test", "received_after", "received_before"]


class OrderFilter(filters.FilterSet):
    strategy = filters.CharFilter(field_name="strategy__strategy_id", max_length=64)
    account = filters.CharFilter(field_name="account__label", max_length=80)
    status = filters.ChoiceFilter(choices=Order.Status.choices)
    symbol = filters.CharFilter(max_length=64)
    signal = filters.NumberFilter(field_name="signal_id", min_value=1, max_value=2**62)
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["strategy", "account", "status", "symbol", "signal", "created_after", "created_before"]


class FillFilter(filters.FilterSet):
    order = filters.NumberFilter(field_name="order_id", min_value=1, max_value=2**62)
    strategy = filters.CharFilter(field_name="order__strategy__strategy_id", max_length=64)
    symbol = filters.CharFilter(field_name="order__symbol", max_length=64)
    filled_after = UtcIsoDateTimeFilter(field_name="filled_at", lookup_expr="gte")

    class Meta:
        model = Fill
        fields = ["order", "strategy", "symbol", "filled_after"]


class PositionFilter(filters.FilterSet):
    account = filters.CharFilter(field_name="account__label", max_length=80)
    strategy = filters.CharFilter(field_name="strategy__strategy_id", max_length=64)
    symbol = filters.CharFilter(max_length=64)
    open = filters.BooleanFilter(method="filter_open", label="Only non-zero positions")

    class Meta:
        model = Position
        fields = ["account", "strategy", "symbol", "open"]

    def filter_open(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.exclude(qty=0) if value else queryset.filter(qty=0)
