"""The TradingView alert message, generated in one place. The strategy page, the README and
docs (checked by a test), `manage.py alert_template` and the installer's closing note all show
what `alert_message` returns, so no copy can drift from what the webhook accepts."""

from __future__ import annotations

import json

PASSPHRASE_PLACEHOLDER = "YOUR_WEBHOOK_PASSPHRASE"
STRATEGY_PASSPHRASE_PLACEHOLDER = "YOUR_STRATEGY_PASSPHRASE"
KINDS = ("strategy", "indicator")


def alert_message(
    *,
    strategy_id: str = "demo",
    passphrase: str = PASSPHRASE_PLACEHOLDER,
    kind: str = "strategy",
    volume: str = "0.01",
) -> str:
    """The message to paste into TradingView's alert dialog, as indented JSON.

    `kind` "strategy": an alert on a Pine strategy, one alert for every order it places (the
    order's own action and size). "indicator": an indicator or alertcondition alert, one per
    action ("buy"; the trader changes it to sell, close_long, ...) with a fixed `volume`.

    Every value is quoted so the body stays valid JSON (and arrives as application/json) even
    when a placeholder comes out empty; the webhook reads numeric strings as numbers."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    message: dict[str, str] = {"passphrase": passphrase, "strategy_id": strategy_id}
    if kind == "strategy":
        message |= {
            "action": "{{strategy.order.action}}",
            "ticker": "{{ticker}}",
            "exchange": "{{exchange}}",
            "price": "{{close}}",
            "volume": "{{strategy.order.contracts}}",
            "timeframe": "{{interval}}",
            "bar_time": "{{time}}",
            "fired_at": "{{timenow}}",
            "order_id": "{{strategy.order.id}}",
            "comment": "{{strategy.order.comment}}",
            "market_position": "{{strategy.market_position}}",
            "market_position_size": "{{strategy.market_position_size}}",
            "prev_market_position": "{{strategy.prev_market_position}}",
        }
    else:
        message |= {
            "action": "buy",
            "ticker": "{{ticker}}",
            "exchange": "{{exchange}}",
            "price": "{{close}}",
            "volume": volume,
            "timeframe": "{{interval}}",
            "bar_time": "{{time}}",
            "fired_at": "{{timenow}}",
        }
    return json.dumps(message, indent=2)
