"""Template helpers for the operator console."""

from __future__ import annotations

from django import template

from strategies.models import TradingControl

register = template.Library()


@register.simple_tag(takes_context=True)
def global_switch_state(context) -> bool:
    """Whether the global kill switch is engaged (one indexed lookup, cached per request)."""
    request = context.get("request")
    if request is None:
        return TradingControl.is_halted()
    if not hasattr(request, "_tv_global_halted"):
        request._tv_global_halted = TradingControl.is_halted()
    return request._tv_global_halted


@register.filter
def ms(value) -> str:
    """Milliseconds for humans: 850 ms, 2.4 s, 3 min."""
    if value is None:
        return "–"
    value = float(value)
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 120_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60000:.0f} min"


@register.filter
def plain(value) -> str:
    """96412.3, not 96412.300000000000 (nor 1E+5)."""
    from decimal import Decimal, InvalidOperation

    from strategies.admin_tools import plain_number

    if value is None or value == "":
        return "–"
    try:
        return plain_number(value if isinstance(value, Decimal) else Decimal(str(value)))
    except InvalidOperation:
        return str(value)


@register.filter
def money(value) -> str:
    """P&L for people: two decimals, a sign when it is a gain or a loss."""
    if value is None:
        return "–"
    value = float(value)
    return f"{value:+,.2f}" if value else "0.00"
