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
# No alert nests; deeper values of unknown fields are stored as this marker, which also
# bounds every walk over a parsed body.
MAX_DEPTH = 16
TOO_DEEP = "[nested too deeply: dropped]"
# Text PostgreSQL cannot store (NUL) or encode (a lone UTF-16 surrogate from a JSON escape
# such as "\ud800"); replaced by U+FFFD so an alert carrying one is still recorded.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_TIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)


class NotJSON(Exception):
    """The body is not a JSON object."""


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:  # beyond Decimal's exponent range, e.g. 1e999999999
        return Decimal("-Infinity") if text.startswith("-") else Decimal("Infinity")


def _integer(text: str) -> int | Decimal:
    # Python refuses to read an integer of more than 4300 digits (a ValueError that would
    # make valid JSON "not JSON"); a Decimal holds any length and stays text when stored.
    return int(text) if len(text) <= 18 else Decimal(text)


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, with every string storable (see `_UNSTORABLE`) and nesting
    bounded by MAX_DEPTH. Raises NotJSON, whose message says what is wrong (never the body)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotJSON("not JSON (body is not UTF-8 text)") from exc
    if not text.strip():
        raise NotJSON("not JSON (empty body)")
    try:
        # Decimal keeps prices exact; NaN/Infinity are let through here so that the field
        # they sit in can be named in the error.
        data = json.loads(text, parse_float=_decimal, parse_int=_integer, parse_constant=lambda c: Decimal(c))
    except json.JSONDecodeError as exc:
        raise NotJSON(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except (ValueError, RecursionError, ArithmeticError) as exc:
        raise NotJSON("not JSON") from exc
    if not isinstance(data, dict):
        raise NotJSON('not JSON (expected an object like {"action": ...})')
    return _storable(data, 0)


def storable_text(value: str) -> str:
    """`value` with what PostgreSQL cannot store or encode replaced by U+FFFD."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def _storable(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return {storable_text(k): _storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return [_storable(v, depth + 1) for v in value]
    return value


def is_passphrase_key(key: str) -> bool:
    return key.lower() == "passphrase"


def secrets_to_hide(*candidates: Any) -> list[str]:
    """The passphrases to hide from what is stored: the ones given as text, long enough to
    be told from ordinary words (the admin refuses shorter ones)."""
    return [c for c in candidates if isinstance(c, str) and len(c) >= 4]


def hide_secrets(text: str, hide: list[str]) -> str:
    for secret in hide:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redacted_copies(data: dict[str, Any], hide: list[str]) -> tuple[dict[str, Any], str]:
    """The parsed body made storable without secrets: the payload (JSON-safe, without the
    passphrase key; one deeper down is kept as REDACTED) and the raw body shown in the
    console, which is the parsed document written out again with passphrase keys kept as
    REDACTED and every secret replaced wherever it appears. Written from the parsed
    document, not the text, so no spelling of the key or escape in the value
    (`pass\\u0070hrase`) can slip through."""
    shown = _redacted(data, hide)
    payload = {k: v for k, v in shown.items() if not is_passphrase_key(k)}
    raw = json.dumps(shown, ensure_ascii=False, default=str)
    if len(raw) > MAX_RAW_BODY_CHARS:
        raw = raw[:MAX_RAW_BODY_CHARS] + f"... [truncated, {len(raw)} chars]"
    return payload, raw


def _redacted(value: Any, hide: list[str]) -> Any:
    if isinstance(value, str):
        return hide_secrets(value, hide)
    if isinstance(value, dict):
        return {
            _redacted(str(k)[:64], hide): REDACTED if is_passphrase_key(k) else _redacted(v, hide)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redacted(v, hide) for v in value]
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """A number as JSON can hold it: huge or non-finite ones stay text
    (int(Decimal("1e999999999")) would never end)."""
    if isinstance(value, Decimal):
        if value.is_finite() and (value.is_zero() or value.adjusted() < 18):
            return float(value) if value != value.to_integral_value() else int(value)
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
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
        errors[name] = f"must be greater than 0 (got {_shown(value)})"
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
        errors[name] = f"must be a number (got {_shown(value)})"
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        errors[name] = f"must be a number (got {_shown(value)})"
        return None
    if not number.is_finite():
        errors[name] = f"must be a finite number (got {_shown(value)})"
        return None
    if number.is_zero():
        return Decimal(0)  # 0e-999999 is zero, and would not fit a column as written
    # No arithmetic here: 1e999999999 would overflow. The columns hold 18 digits before the
    # point and 12 after.
    if not -12 <= number.adjusted() < 18:
        errors[name] = f"is out of range (got {_shown(value)})"
        return None
    return number


def _shown(value: Any) -> str:
    """A value quoted in an error message, short enough to read."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TYPE_NAMES = {dict: "an object", list: "a list", bool: "true/false", Decimal: "a number", int: "a number"}


def _string(
    name: str, value: Any, errors: dict[str, str], *, max_len: int, required: bool = False, numbers: bool = False
) -> str:
    """A text field. Names and codes (`numbers=False`) must be JSON strings; free text may
    also arrive as a bare number (an unquoted `{{interval}}` renders as 60)."""
    if value is None:
        if required:
            errors[name] = "is required"
        return ""
    if numbers and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = _TYPE_NAMES.get(type(value), type(value).__name__)
        errors[name] = f"must be a string in quotes (got {kind}: {_shown(_jsonable(value))})"
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
    moment = None
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
            moment = datetime.fromtimestamp(number, tz=UTC)
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        pass
    if moment is None:
        errors[name] = f"must be a time like 2024-05-01T12:00:00Z or epoch seconds (got {_shown(value)})"
        return None
    if not _TIME_MIN <= moment < _TIME_MAX:
        errors[name] = f"is not a plausible alert time (got {_shown(value)}, read as {moment.isoformat()})"
        return None
    return moment


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
        errors["action"] = f"must be one of {', '.join(ACTIONS)} (got {_shown(data.get('action'))})"
    partial["action"] = action[:16]

    raw_ticker = _string("ticker", data.get("ticker"), errors, max_len=64, required=True).upper()
    ticker_exchange = ""
    if ":" in raw_ticker:
        ticker_exchange, _, raw_ticker = raw_ticker.partition(":")
        if not raw_ticker:
            errors["ticker"] = f"has no symbol after the exchange prefix (got {_shown(data.get('ticker'))})"
    if raw_ticker and not _TICKER_RE.match(raw_ticker):
        errors["ticker"] = f"is not a TradingView ticker like BTCUSDT or BTCUSDT.P (got {_shown(data.get('ticker'))})"
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
            errors["exchange"] = f"must be one of {', '.join(EXCHANGES)} (got {_shown(raw_exchange)})"
    partial["exchange"] = exchange or raw_exchange[:16]

    price = _positive_number("price", data.get("price"), errors)
    volume = _positive_number("volume", data.get("volume"), errors)
    partial["price"] = price
    partial["volume"] = volume

    timeframe = _string("timeframe", data.get("timeframe"), errors, max_len=16, numbers=True)
    bar_time = _timestamp("bar_time", data.get("bar_time"), errors)
    fired_at = _timestamp("fired_at", data.get("fired_at"), errors)
    tv_order_id = _string("order_id", data.get("order_id"), errors, max_len=128, numbers=True)
    comment = _string("comment", data.get("comment"), errors, max_len=255, numbers=True)

    positions: dict[str, str] = {}
    for name in ("market_position", "prev_market_position"):
        value = _string(name, data.get(name), errors, max_len=16).lower()
        if value and value not in _POSITIONS:
            errors[name] = f"must be long, short or flat (got {_shown(data.get(name))})"
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
