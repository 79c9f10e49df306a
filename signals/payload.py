"""Parse and validate a TradingView alert body.

TradingView sends `application/json` only when the message is valid JSON and `text/plain`
otherwise, so the content type is not trusted: the body is parsed as JSON either way.
Validation collects one clear message per bad field instead of stopping at the first.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from strategies.models import ACTIONS

EXCHANGES = ("BYBIT", "BINANCE", "BITGET", "OKX")
_EXCHANGE_RE = re.compile(r"^(BYBIT|BINANCE|BITGET|OKX)(?:_DLY?|_DELAYED)?$")
_TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9_\-]{0,39}(?:\.P)?$")
_PLACEHOLDER_RE = re.compile(r"\{\{.*?\}\}")
_POSITIONS = ("long", "short", "flat")
REDACTED = "[redacted]"
MAX_RAW_BODY_CHARS = 4000


class NotJSON(Exception):
    """The body is not a JSON object."""


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:  # beyond Decimal's exponent range, e.g. 1e999999999
        return Decimal("-Infinity") if text.startswith("-") else Decimal("Infinity")


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotJSON("not JSON (body is not UTF-8 text)") from exc
    if not text.strip():
        raise NotJSON("not JSON (empty body)")
    if "\x00" in text or "\\u0000" in text.lower():
        # No alert contains NUL, and PostgreSQL cannot store it in text or JSON.
        raise NotJSON("not JSON (contains NUL characters)")
    try:
        # Decimal keeps prices exact; NaN/Infinity are let through here so that the field
        # they sit in can be named in the error.
        data = json.loads(text, parse_float=_decimal, parse_constant=lambda c: Decimal(c))
    except (ValueError, RecursionError, ArithmeticError) as exc:
        raise NotJSON("not JSON") from exc
    if not isinstance(data, dict):
        raise NotJSON('not JSON (expected an object like {"action": ...})')
    return data


def redact_text(text: str, secrets_to_hide: list[str]) -> str:
    """Remove passphrases from a raw body we keep for forensics (also from non-JSON bodies)."""
    text = re.sub(r'("passphrase"\s*:\s*)"(?:[^"\\]|\\.)*"', r'\1"' + REDACTED + '"', text)
    text = text.replace("\x00", "\\x00")
    for secret in secrets_to_hide:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    if len(text) > MAX_RAW_BODY_CHARS:
        text = text[:MAX_RAW_BODY_CHARS] + f"... [truncated, {len(text)} chars]"
    return text


def redacted_payload(data: dict[str, Any]) -> dict[str, Any]:
    """The parsed body made JSON-safe for storage, without the passphrase."""
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if str(key).lower() == "passphrase":
            continue
        clean[str(key)[:64]] = _jsonable(value)
    return clean


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Huge or non-finite numbers stay text: int(Decimal("1e999999999")) would never end.
        if value.is_finite() and (value.is_zero() or value.adjusted() < 18):
            return float(value) if value != value.to_integral_value() else int(value)
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k)[:64]: _jsonable(v) for k, v in value.items() if str(k).lower() != "passphrase"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Alert:
    """A validated alert, normalised."""

    strategy_key: str
    action: str
    ticker: str
    exchange: str
    price: Decimal
    volume: Decimal
    timeframe: str = ""
    bar_time: datetime | None = None
    fired_at: datetime | None = None
    tv_order_id: str = ""
    comment: str = ""
    market_position: str = ""
    market_position_size: Decimal | None = None
    position_size: Decimal | None = None
    prev_market_position: str = ""
    #: stop_loss / take_profit / trailing_stop, normalised (see `_protection`); None when absent.
    protection: dict[str, dict[str, str]] | None = None


@dataclass
class Validation:
    alert: Alert | None
    errors: dict[str, str] = field(default_factory=dict)
    # Whatever could be read, so a rejected signal still shows it.
    partial: dict[str, Any] = field(default_factory=dict)


def _placeholder(value: Any) -> str | None:
    if isinstance(value, str):
        match = _PLACEHOLDER_RE.search(value)
        if match:
            return match.group(0)
    return None


def _positive_number(name: str, value: Any, errors: dict[str, str]) -> Decimal | None:
    number = _number(name, value, errors, required=True)
    if number is not None and number <= 0:
        errors[name] = f"must be greater than 0 (got {value!r})"
        return None
    return number


def _number(name: str, value: Any, errors: dict[str, str], *, required: bool) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors[name] = "is required" if value is None else "is empty"
        return None
    placeholder = _placeholder(value)
    if placeholder:
        errors[name] = f"contains the unreplaced TradingView placeholder {placeholder}"
        return None
    if isinstance(value, bool):
        errors[name] = f"must be a number (got {value!r})"
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        errors[name] = f"must be a number (got {value!r})"
        return None
    if not number.is_finite():
        errors[name] = f"must be a finite number (got {value!r})"
        return None
    if not number.is_zero() and number.adjusted() >= 18:  # no arithmetic: 1e999999999 would overflow
        errors[name] = f"is out of range (got {value!r})"
        return None
    return number


def _string(name: str, value: Any, errors: dict[str, str], *, max_len: int, required: bool = False) -> str:
    if value is None:
        if required:
            errors[name] = "is required"
        return ""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        errors[name] = f"must be a string (got {type(value).__name__})"
        return ""
    value = value.strip()
    if required and not value:
        errors[name] = "is empty"
        return ""
    placeholder = _placeholder(value)
    if placeholder:
        errors[name] = f"contains the unreplaced TradingView placeholder {placeholder}"
        return ""
    if len(value) > max_len:
        errors[name] = f"is too long ({len(value)} characters, at most {max_len})"
        return ""
    return value


def _timestamp(name: str, value: Any, errors: dict[str, str]) -> datetime | None:
    if value is None or value == "":
        return None
    placeholder = _placeholder(value)
    if placeholder:
        errors[name] = f"contains the unreplaced TradingView placeholder {placeholder}"
        return None
    try:
        if (
            isinstance(value, (int, Decimal))
            and not isinstance(value, bool)
            or (isinstance(value, str) and value.strip().isdigit())
        ):
            number = float(value)
            # {{time}} is ISO text, but scripts also send epoch seconds or milliseconds.
            if number > 1e11:
                number /= 1000.0
            return datetime.fromtimestamp(number, tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    errors[name] = f"must be a time like 2024-05-01T12:00:00Z or epoch seconds (got {value!r})"
    return None


#: How each protective field may be written: a bare number means a price for a stop or a
#: take-profit, and a price distance for a trailing stop.
_PROTECTION_FORMS = {
    "stop_loss": ("price", ("price", "percent")),
    "take_profit": ("price", ("price", "percent")),
    "trailing_stop": ("distance", ("distance", "percent")),
}


def _protection(data: dict[str, Any], errors: dict[str, str]) -> dict[str, dict[str, str]] | None:
    """`stop_loss` / `take_profit`: a price (`95000` or `{"price": 95000}`) or `{"percent": 2}`
    from the entry's average fill; `trailing_stop`: `{"percent": 1}` or a price distance
    (`250` or `{"distance": 250}`). Whether a level suits the trade (side, venue) is the
    settings validator's question (strategies.validation.protection_errors)."""
    spec: dict[str, dict[str, str]] = {}
    for name, (bare, forms) in _PROTECTION_FORMS.items():
        value = data.get(name)
        if value is None or value == "" or value == {}:
            continue
        if isinstance(value, dict):
            keys = {str(k).lower(): v for k, v in value.items()}
            given = [k for k in forms if keys.get(k) not in (None, "")]
            unknown = sorted(set(keys) - set(forms))
            if unknown or len(given) != 1:
                errors[name] = f"must be a number or an object with one of {' / '.join(forms)} (got {value!r})"[:300]
                continue
            form, raw = given[0], keys[given[0]]
        else:
            form, raw = bare, value
        number = _number(name, raw, errors, required=True)
        if number is None:
            continue
        if number <= 0:
            errors[name] = f"{form} must be greater than 0 (got {raw!r})"
            continue
        if form == "percent" and number >= 100:
            errors[name] = f"percent must be below 100 (got {raw!r})"
            continue
        spec[name] = {form: format(number.normalize(), "f")}
    return spec or None


def validate(data: dict[str, Any]) -> Validation:
    errors: dict[str, str] = {}
    partial: dict[str, Any] = {}

    strategy_key = _string("strategy_id", data.get("strategy_id"), errors, max_len=64, required=True)
    partial["strategy_key"] = strategy_key

    action = _string("action", data.get("action"), errors, max_len=16, required=True).lower()
    if action and action not in ACTIONS:
        errors["action"] = f"must be one of {', '.join(ACTIONS)} (got {data.get('action')!r})"
    partial["action"] = action[:16]

    raw_ticker = _string("ticker", data.get("ticker"), errors, max_len=64, required=True).upper()
    ticker_exchange = ""
    if ":" in raw_ticker:
        ticker_exchange, _, raw_ticker = raw_ticker.partition(":")
    if raw_ticker and not _TICKER_RE.match(raw_ticker):
        errors["ticker"] = f"is not a TradingView ticker like BTCUSDT or BTCUSDT.P (got {data.get('ticker')!r})"
    partial["ticker"] = raw_ticker[:64]

    raw_exchange = _string("exchange", data.get("exchange"), errors, max_len=32).upper() or ticker_exchange
    exchange = ""
    if not raw_exchange:
        errors.setdefault("exchange", "is required")
    else:
        match = _EXCHANGE_RE.match(raw_exchange)
        if match:
            exchange = match.group(1)
        else:
            errors["exchange"] = f"must be one of {', '.join(EXCHANGES)} (got {raw_exchange!r})"
    partial["exchange"] = exchange or raw_exchange[:16]

    price = _positive_number("price", data.get("price"), errors)
    volume = _positive_number("volume", data.get("volume"), errors)
    partial["price"] = price
    partial["volume"] = volume

    timeframe = _string("timeframe", data.get("timeframe"), errors, max_len=16)
    bar_time = _timestamp("bar_time", data.get("bar_time"), errors)
    fired_at = _timestamp("fired_at", data.get("fired_at"), errors)
    tv_order_id = _string("order_id", data.get("order_id"), errors, max_len=128)
    comment = _string("comment", data.get("comment"), errors, max_len=255)

    positions: dict[str, str] = {}
    for name in ("market_position", "prev_market_position"):
        value = _string(name, data.get(name), errors, max_len=16).lower()
        if value and value not in _POSITIONS:
            errors[name] = f"must be long, short or flat (got {data.get(name)!r})"
            value = ""
        positions[name] = value
    market_position_size = _number("market_position_size", data.get("market_position_size"), errors, required=False)
    position_size = _number("position_size", data.get("position_size"), errors, required=False)

    protection = _protection(data, errors)

    partial.update(timeframe=timeframe, bar_time=bar_time, fired_at=fired_at, tv_order_id=tv_order_id)

    if errors:
        return Validation(alert=None, errors=errors, partial=partial)
    alert = Alert(
        strategy_key=strategy_key,
        action=action,
        ticker=raw_ticker,
        exchange=exchange,
        price=price,  # type: ignore[arg-type]
        volume=volume,  # type: ignore[arg-type]
        timeframe=timeframe,
        bar_time=bar_time,
        fired_at=fired_at,
        tv_order_id=tv_order_id,
        comment=comment,
        market_position=positions["market_position"],
        market_position_size=market_position_size,
        position_size=position_size,
        prev_market_position=positions["prev_market_position"],
        protection=protection,
    )
    return Validation(alert=alert, errors={}, partial=partial)
