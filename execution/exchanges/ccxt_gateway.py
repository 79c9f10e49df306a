"""The ccxt gateway: Bybit V5, Binance USD-M, Bitget and OKX behind one interface.

Per worker process and account: markets are loaded once (restricted to the account's
market type, no currency/account probes) and shared; ccxt instances are kept in a small
LIFO pool (one per concurrent thread — the sync ccxt client is not thread-safe) and copied
from the loaded one, so the hot path never calls `load_markets`. ccxt's own retries and
rate limiter are off: creations are never retried blindly, and the rate limit is ours
(shared by every process through Redis).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import types
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import ccxt
from django.conf import settings

from .base import Gateway, MarketInfo, OrderState, PositionInfo, client_order_id_problem
from .errors import (
    GatewayError,
    Misconfigured,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    SendAborted,
    TemporaryError,
)

logger = logging.getLogger("tvtrader.exchanges")

MARKETS_MAX_AGE_SECONDS = 6 * 3600


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except Exception:
        return None


# Venue codes ccxt leaves as a bare ExchangeError although they are definitive refusals of an
# order (nothing was booked). Without this table a creation answered with one would read as
# ambiguous: looked up, not found, and resent until MAX_SUBMITS. A duplicate client id (Bitget
# 40786) is deliberately not here: it means the order exists, so the lookup is right.
DEFINITE_REFUSALS: dict[str, dict[str, str]] = {
    "bitget": {
        "22002": "no position to close",
        "40757": "not enough position to close",
        "45111": "below the minimum order quantity",
    },
    "okx": {
        "51169": "no position in this direction to reduce or close",
        "51170": "a reduce-only order cannot add to the position",
    },
}
_VENUE_CODE_RE = re.compile(r'"(?:sCode|code)"\s*:\s*"(\d+)"')


def _definite_refusal(exchange: str, exc: Exception) -> str:
    table = DEFINITE_REFUSALS.get(exchange)
    if not table:
        return ""
    for code in _VENUE_CODE_RE.findall(str(exc)):
        if code in table:
            return f"{table[code]} ({exchange} {code})"
    return ""


def translate(exc: Exception, *, creating: bool = False, exchange: str = "") -> GatewayError:
    """ccxt exception → our hierarchy. Order matters: subclasses first."""
    message = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, ccxt.InsufficientFunds):
        return OrderRejected(f"insufficient funds ({message})")
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(message)
    if isinstance(exc, ccxt.InvalidOrder):
        return OrderRejected(f"invalid order ({message})")
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return RateLimited(message)
    if isinstance(exc, ccxt.NetworkError):  # timeouts, 5xx, refused, InvalidNonce
        return TemporaryError(message)
    if isinstance(exc, (ccxt.AuthenticationError, ccxt.AccountSuspended, ccxt.BadSymbol, ccxt.NotSupported)):
        return Misconfigured(message)
    if isinstance(exc, ccxt.BadRequest):
        return OrderRejected(f"bad request ({message})")
    if isinstance(exc, ccxt.OperationRejected):
        # Understood and refused (e.g. Binance -4061 "position side does not match the
        # account's setting", OKX 4088 re-verify identity): final, nothing was booked.
        return OrderRejected(f"refused by the exchange ({message})")
    if isinstance(exc, ccxt.ExchangeError):
        refusal = _definite_refusal(exchange, exc)
        if refusal:
            return OrderRejected(f"{refusal}: {message}")
        # Bare ExchangeError covers venue "internal error"/"server timeout" codes and unknown
        # ones: for a creation that is ambiguous, so it must be looked up, not trusted.
        return TemporaryError(message) if creating else GatewayError(message)
    return TemporaryError(message)


def _order_state(order: dict[str, Any], client_order_id: str = "", contract_size: Decimal = Decimal("1")) -> OrderState:
    """ccxt's order → ours. Quantities come back in contracts; ours are in the base coin."""
    status = order.get("status")
    filled = (_dec(order.get("filled")) or Decimal("0")) * contract_size
    amount = _dec(order.get("amount"))
    amount = amount * contract_size if amount is not None else None
    if status == "closed":
        mapped = "filled"
    elif status in ("canceled", "cancelled", "expired"):
        mapped = "cancelled"
    elif status == "rejected":
        mapped = "rejected"
    else:
        mapped = "partially_filled" if filled > 0 else "open"
    fee = Decimal("0")
    fee_currency = ""
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    for item in fees:
        if item and item.get("cost") is not None:
            fee += _dec(item.get("cost")) or Decimal("0")
            fee_currency = item.get("currency") or fee_currency
    info = order.get("info") or {}
    return OrderState(
        client_order_id=order.get("clientOrderId") or client_order_id,
        exchange_order_id=str(order.get("id") or ""),
        status=mapped,
        filled=filled,
        average=_dec(order.get("average")) if filled > 0 else None,
        fee=fee,
        fee_currency=fee_currency,
        amount=amount,
        reason=str(info.get("rejectReason") or "") if mapped == "rejected" else "",
        raw=info if isinstance(info, dict) else {},
    )


MARKETS_SNAPSHOT_KEY = "markets:account:{}"


def contract_size(m: dict[str, Any]) -> Decimal:
    """Base coin per contract: 1 on Bybit, Binance and Bitget linear markets; OKX swaps
    trade in contracts of ctVal (e.g. 0.01 BTC), so quantities are divided by it on the way
    out (create) and multiplied by it on the way back (orders, fills, positions)."""
    if m.get("spot") or not m.get("contract"):
        return Decimal("1")
    return _dec(m.get("contractSize")) or Decimal("1")


def market_info(symbol: str, m: dict[str, Any]) -> MarketInfo:
    """Trading rules in base-coin units, whatever unit the venue counts in."""
    limits = m.get("limits") or {}
    precision = m.get("precision") or {}
    size = contract_size(m)
    return MarketInfo(
        symbol=symbol,
        base=m.get("base", ""),
        quote=m.get("quote", ""),
        kind="spot" if m.get("spot") else "linear",
        amount_step=(_dec(precision.get("amount")) or Decimal("0")) * size,
        price_step=_dec(precision.get("price")) or Decimal("0"),
        min_qty=(_dec((limits.get("amount") or {}).get("min")) or Decimal("0")) * size,
        min_notional=_dec((limits.get("cost") or {}).get("min")) or Decimal("0"),
        max_leverage=int(_dec((limits.get("leverage") or {}).get("max")) or 0) or None,
    )


def _snapshot_markets(account_id: int, markets: dict[str, Any]) -> None:
    """Keep the markets' trading rules in Redis, so the admin can validate settings
    without calling the exchange (it validates inside a database transaction)."""
    import json

    from tvtrader.redisconn import key, redis_client

    compact = {
        symbol: {k: m.get(k) for k in ("base", "quote", "spot", "contract", "contractSize", "precision", "limits")}
        for symbol, m in markets.items()
    }
    try:
        redis_client().set(key(MARKETS_SNAPSHOT_KEY.format(account_id)), json.dumps(compact, default=str), ex=7 * 86400)
    except Exception:
        logger.warning("event=markets_snapshot_failed account_id=%s", account_id)


def _throttle_hook(self, cost=None):
    """Replaces ccxt's per-instance sleep limiter (off: our limit is shared in Redis). ccxt
    calls `throttle` right before it signs and sends a request, which is exactly where an
    order's rate-limit slot belongs: nothing slow can then sit between the slot and the
    request reaching the venue."""
    hook = getattr(self, "_tv_before_send", None)
    if hook is not None:
        self._tv_before_send = None
        hook()


class CcxtGateway(Gateway):
    def __init__(
        self,
        *,
        account_id: int,
        exchange: str,
        mode: str,
        market_type: str,
        credentials: dict[str, str],
        base_url: str = "",
        label: str = "",
        position_mode: str = "one_way",
        margin_mode: str = "cross",
    ):
        self.account_id = account_id
        self.exchange_id = exchange
        self.name = exchange
        self.mode = mode
        self.market_type = market_type
        self.label = label
        self._credentials = credentials
        self._base_url = base_url
        self._lock = threading.Lock()
        self._pool: list[ccxt.Exchange] = []
        self._primary: ccxt.Exchange | None = None
        self._markets_loaded_at = 0.0
        self._leverage_set: set[tuple[str, int]] = set()
        # Bitget and OKX perpetuals: the position mode the account is in at the venue, and the
        # margin mode sent with every order (Bitget marginMode, OKX tdMode).
        self.hedged = position_mode == "hedge" and market_type == "linear" and exchange in ("bitget", "okx")
        self.margin_mode = margin_mode if market_type == "linear" else "cross"
        # Only Bybit refuses a reused client id forever. Binance accepts one once the earlier
        # order is no longer open; Bitget documents clientOid idempotency as "only valid when
        # orders are unfilled"; OKX looks orders up by clOrdId as "the latest" of several, i.e.
        # reuse after the first is done is allowed. Those get the long "not found" grace before
        # any resend.
        self.client_id_always_unique = exchange == "bybit"

    # --- instances and markets ---------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        options: dict[str, Any] = {"maxRetriesOnFailure": 0}
        if self.exchange_id == "bybit":
            options.update(
                fetchMarkets={"types": ["spot"] if self.market_type == "spot" else ["linear"]},
                enableUnifiedAccount=True,
                enableUnifiedMargin=False,
                defaultType="spot" if self.market_type == "spot" else "swap",
            )
        elif self.exchange_id == "okx":
            options.update(
                fetchMarkets={"types": ["spot"] if self.market_type == "spot" else ["swap"]},
                defaultType="spot" if self.market_type == "spot" else "swap",
                # POST /api/v5/trade/order, one order per request (ccxt's default wraps it in
                # a one-element batch-orders call).
                createOrder="privatePostTradeOrder",
            )
        elif self.exchange_id == "binanceusdm":
            # Reconcile lists every open order of the account in one call; ccxt refuses that
            # without a symbol unless told the (heavier) rate cost is understood.
            options.update(warnOnFetchOpenOrdersWithoutSymbol=False)
        elif self.exchange_id == "bitget":
            options.update(
                fetchMarkets={"types": ["spot"] if self.market_type == "spot" else ["swap"]},
                defaultType="spot" if self.market_type == "spot" else "swap",
                # The classic (v2) API: skips ccxt's unified-account probe on the first private
                # call (GET /api/v3/account/settings).
                uta=False,
            )
        config: dict[str, Any] = {
            "enableRateLimit": False,
            "timeout": int(settings.EXCHANGE_TIMEOUT_SECONDS * 1000),
            "options": options,
            "has": {"fetchCurrencies": False},
        }
        for key in ("apiKey", "secret", "password"):
            if self._credentials.get(key):
                config[key] = self._credentials[key]
        return config

    def _new_instance(self) -> ccxt.Exchange:
        cls = getattr(ccxt, self.exchange_id)
        ex = cls(self._config())
        ex.enableRateLimit = True  # so that fetch2 calls throttle(), which is ours
        ex.throttle = types.MethodType(_throttle_hook, ex)
        ex._tv_before_send = None
        if self.mode == "testnet":
            if self._base_url:
                from .redirect import redirect_exchange

                redirect_exchange(ex, self._base_url)
            else:
                ex.set_sandbox_mode(True)
        return ex

    def _ensure_markets(self) -> ccxt.Exchange:
        with self._lock:
            if self._primary is None or time.monotonic() - self._markets_loaded_at > MARKETS_MAX_AGE_SECONDS:
                primary = self._new_instance()
                try:
                    primary.load_markets(True)
                except Exception as exc:
                    if self._primary is not None:
                        # A failed refresh must not stop trading on markets we already know;
                        # try again in five minutes.
                        self._markets_loaded_at = time.monotonic() - MARKETS_MAX_AGE_SECONDS + 300
                        logger.warning("event=markets_refresh_failed account=%s error=%s", self.label, str(exc)[:200])
                        return self._primary
                    raise translate(exc) from exc
                self._primary = primary
                self._markets_loaded_at = time.monotonic()
                self._pool = [primary]
                _snapshot_markets(self.account_id, primary.markets)
                logger.info(
                    "event=markets_loaded account=%s exchange=%s markets=%d",
                    self.label,
                    self.exchange_id,
                    len(primary.markets),
                )
            return self._primary

    def warm(self) -> None:
        """Load markets now (worker start-up), so no alert pays for it."""
        self._ensure_markets()

    def client_config(self) -> dict[str, Any]:
        """The ccxt constructor config of this account (credentials included): the order
        stream (streams.py) builds its ccxt pro client from the same."""
        return self._config()

    def loaded_markets(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The account's markets and currencies as loaded here (loading them if needed)."""
        primary = self._ensure_markets()
        return primary.markets, primary.currencies or {}

    @contextmanager
    def _client(self):
        primary = self._ensure_markets()
        with self._lock:
            ex = self._pool.pop() if self._pool else None
        if ex is None:
            ex = self._new_instance()
            ex.set_markets_from_exchange(primary)
        try:
            yield ex
        finally:
            with self._lock:
                self._pool.append(ex)

    # --- the interface ------------------------------------------------------------------

    def _contract_size(self, symbol: str) -> Decimal:
        return contract_size(self._ensure_markets().markets.get(symbol) or {})

    def market(self, symbol: str) -> MarketInfo:
        primary = self._ensure_markets()
        m = primary.markets.get(symbol)
        if m is None:
            raise Misconfigured(f"{symbol} is not a market on {self.exchange_id} ({self.market_type})")
        return market_info(symbol, m)

    def symbols(self) -> list[str]:
        return list(self._ensure_markets().markets)

    def create_order(
        self,
        *,
        symbol,
        side,
        order_type,
        qty,
        price,
        reduce_only,
        client_order_id,
        signal_price=None,
        before_send=None,
    ) -> OrderState:
        problem = client_order_id_problem(self.exchange_id, client_order_id)
        if problem:
            raise OrderRejected(problem)  # nothing sent
        params: dict[str, Any] = {"clientOrderId": client_order_id}
        if reduce_only:
            params["reduceOnly"] = True
        if self.market_type == "linear" and self.exchange_id in ("bitget", "okx"):
            params["marginMode"] = self.margin_mode
            if self.hedged:
                # ccxt maps the engine's legs onto the position they act on: a reduce-only sell
                # closes the long (Bitget side=buy + tradeSide=Close, OKX posSide=long), a plain
                # sell opens the short (tradeSide=Open / posSide=short), and so on.
                params["hedged"] = True
        size = self._contract_size(symbol)
        order_price = float(price) if price is not None else None
        if self.exchange_id == "bitget" and self.market_type == "spot" and order_type == "market" and side == "buy":
            # Bitget sizes a spot market buy in USDT: ccxt sends qty x price. What fills is that
            # amount at the venue's price, so the base quantity can differ a little from qty.
            reference = signal_price if signal_price is not None else price
            if reference is None:
                raise OrderRejected("a Bitget spot market buy is sized in USDT and needs a reference price")
            order_price = float(reference)
        with self._client() as ex:
            ex._tv_before_send = before_send
            try:
                order = ex.create_order(symbol, order_type, side, float(qty / size), order_price, params)
            except SendAborted:
                raise
            except Exception as exc:
                if ex._tv_before_send is not None and before_send is not None:
                    # Failed before the request was built (e.g. ccxt's own precision check):
                    # nothing was sent, so nothing is ambiguous.
                    err = translate(exc, exchange=self.exchange_id)
                    if isinstance(err, (OrderRejected, Misconfigured)):
                        raise err from exc
                    raise TemporaryError(f"not sent: {err}") from exc
                raise translate(exc, creating=True, exchange=self.exchange_id) from exc
            finally:
                ex._tv_before_send = None
        if not order or not order.get("id"):
            # An HTTP 200 with a body ccxt could not read raises nothing: still ambiguous.
            raise TemporaryError("the exchange's reply carried no order id")
        return _order_state(order, client_order_id, size)

    def find_order(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        size = self._contract_size(symbol)
        with self._client() as ex:
            try:
                if self.exchange_id == "bybit":
                    # Bybit lookups by client id need orderLinkId on the list endpoints
                    # (fetch_order with id=None would send orderId=None).
                    params = {"orderLinkId": client_order_id}
                    found = ex.fetch_open_orders(symbol, None, None, params)
                    if not found:
                        found = ex.fetch_canceled_and_closed_orders(symbol, None, None, params)
                    return _order_state(found[0], client_order_id, size) if found else None
                # Bitget and OKX look up by clientOid / clOrdId when it is given; ccxt's Bitget
                # spot lookup formats the id into its "not found" message, so never None there.
                order_id = exchange_order_id or ("" if self.exchange_id == "bitget" else None)
                order = ex.fetch_order(order_id, symbol, {"clientOrderId": client_order_id})
                return _order_state(order, client_order_id, size)
            except ccxt.OrderNotFound:
                return None
            except Exception as exc:
                raise translate(exc) from exc

    def cancel_order(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        with self._client() as ex:
            try:
                if self.exchange_id == "bybit":
                    ex.cancel_order(None, symbol, {"orderLinkId": client_order_id})
                else:
                    ex.cancel_order(exchange_order_id or None, symbol, {"clientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                pass  # already final; the lookup below says how it ended
            except Exception as exc:
                raise translate(exc) from exc
        return self.find_order(symbol=symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id)

    # --- protective orders ----------------------------------------------------------------
    # Bybit V5: a conditional market order (triggerPrice + triggerDirection, reduceOnly) with
    # our orderLinkId, which becomes a market order when the last price crosses the trigger.
    # Binance USD-M: an algo order (POST /fapi/v1/algoOrder, clientAlgoId) of type
    # STOP_MARKET / TAKE_PROFIT_MARKET / TRAILING_STOP_MARKET, reduceOnly; once it fires, the
    # market order it placed (actualOrderId) carries the fill.

    PROTECTIVE_VENUES = ("bybit", "binanceusdm")

    def create_protective(
        self,
        *,
        symbol,
        kind,
        side,
        qty,
        trigger_price,
        trail_percent=None,
        trail_distance=None,
        client_order_id,
        before_send=None,
    ) -> OrderState:
        if self.exchange_id not in self.PROTECTIVE_VENUES or self.market_type != "linear":
            raise Misconfigured(f"protective orders are not wired for {self.exchange_id} {self.market_type} yet")
        problem = client_order_id_problem(self.exchange_id, client_order_id)
        if problem:
            raise OrderRejected(problem)
        params: dict[str, Any] = {"clientOrderId": client_order_id, "reduceOnly": True}
        if kind == "stop_loss":
            params["stopLossPrice"] = float(trigger_price)
        elif kind == "take_profit":
            params["takeProfitPrice"] = float(trigger_price)
        elif kind == "trailing_stop" and self.exchange_id == "binanceusdm" and trail_percent is not None:
            params["trailingPercent"] = float(trail_percent)
        else:
            raise Misconfigured(f"a {kind} by {'distance' if trail_distance else 'percent'} is not wired for "
                                f"{self.exchange_id}")  # fmt: skip
        size = self._contract_size(symbol)
        with self._client() as ex:
            ex._tv_before_send = before_send
            try:
                order = ex.create_order(symbol, "market", side, float(qty / size), None, params)
            except SendAborted:
                raise
            except Exception as exc:
                if ex._tv_before_send is not None and before_send is not None:
                    err = translate(exc, exchange=self.exchange_id)
                    if isinstance(err, (OrderRejected, Misconfigured)):
                        raise err from exc
                    raise TemporaryError(f"not sent: {err}") from exc
                raise translate(exc, creating=True, exchange=self.exchange_id) from exc
            finally:
                ex._tv_before_send = None
        if not order or not order.get("id"):
            raise TemporaryError("the exchange's reply carried no order id")
        state = _order_state(order, client_order_id, size)
        if state.status == "filled" and not state.filled:
            state.status = "open"  # an acknowledgement without the order's state in it
        return state

    def find_protective(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        if self.exchange_id != "binanceusdm":
            return self.find_order(symbol=symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id)
        size = self._contract_size(symbol)
        with self._client() as ex:
            try:
                algo = ex.fetch_order(None, symbol, {"clientOrderId": client_order_id, "trigger": True})
                info = algo.get("info") or {}
                actual = str(info.get("actualOrderId") or "")
                if algo.get("status") != "closed" or not actual:
                    state = _order_state(algo, client_order_id, size)
                    if state.status == "filled":  # fired, its market order not known yet
                        state.status = "open"
                    return state
                fired = ex.fetch_order(actual, symbol)
            except ccxt.OrderNotFound:
                return None
            except Exception as exc:
                raise translate(exc) from exc
        state = _order_state(fired, client_order_id, size)
        state.client_order_id = client_order_id
        state.exchange_order_id = str(algo.get("id") or "")
        state.raw = {"algo": info, "order": fired.get("info") or {}}
        return state

    def cancel_protective(self, *, symbol, client_order_id, exchange_order_id="") -> OrderState | None:
        if self.exchange_id != "binanceusdm":
            return self.cancel_order(
                symbol=symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id
            )
        with self._client() as ex:
            try:
                ex.cancel_order(None, symbol, {"clientOrderId": client_order_id, "trigger": True})
            except ccxt.OrderNotFound:
                pass
            except Exception as exc:
                raise translate(exc) from exc
        return self.find_protective(symbol=symbol, client_order_id=client_order_id)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        with self._client() as ex:
            try:
                orders = ex.fetch_open_orders(symbol)
            except Exception as exc:
                raise translate(exc) from exc
        return [_order_state(o, contract_size=contract_size(ex.markets.get(o.get("symbol"), {}))) for o in orders]

    def fetch_positions(self, symbols: list[str] | None = None) -> list[PositionInfo]:
        if self.market_type == "spot":
            return []
        with self._client() as ex:
            try:
                rows = ex.fetch_positions(symbols)
            except Exception as exc:
                raise translate(exc) from exc
        net: dict[str, PositionInfo] = {}
        for row in rows:
            contracts = _dec(row.get("contracts")) or Decimal("0")
            size = contracts * (_dec(row.get("contractSize")) or Decimal("1"))
            if not size:
                continue
            sign = -1 if row.get("side") == "short" else 1
            info = PositionInfo(
                symbol=row["symbol"],
                qty=sign * size,
                avg_price=_dec(row.get("entryPrice")),
                unrealized_pnl=_dec(row.get("unrealizedPnl")),
                mark_price=_dec(row.get("markPrice")),
            )
            held = net.get(info.symbol)
            if held is None:
                net[info.symbol] = info
                continue
            # Hedge mode: a long and a short book on one symbol. Ours are net per symbol, so is
            # this; the entry shown is the larger book's.
            larger = held if abs(held.qty) >= abs(info.qty) else info
            upnl = (held.unrealized_pnl or Decimal("0")) + (info.unrealized_pnl or Decimal("0"))
            net[info.symbol] = PositionInfo(
                symbol=info.symbol,
                qty=held.qty + info.qty,
                avg_price=larger.avg_price,
                unrealized_pnl=upnl,
                mark_price=info.mark_price or held.mark_price,
            )
        return [p for p in net.values() if p.qty]

    def fetch_equity(self, currency: str = "USDT") -> Decimal:
        with self._client() as ex:
            try:
                balance = ex.fetch_balance()
            except Exception as exc:
                raise translate(exc) from exc
        return _dec((balance.get("total") or {}).get(currency)) or Decimal("0")

    def _leverage_calls(self) -> list[dict[str, Any]]:
        """The params of each set_leverage call this account needs."""
        isolated = self.margin_mode == "isolated"
        if self.exchange_id == "okx":
            if isolated and self.hedged:
                return [{"marginMode": "isolated", "posSide": side} for side in ("long", "short")]
            return [{"marginMode": self.margin_mode}]
        if self.exchange_id == "bitget" and isolated:
            # Isolated margin keeps a leverage per side on Bitget.
            return [{"holdSide": side} for side in ("long", "short")]
        return [{}]

    def set_leverage(self, *, symbol: str, leverage: int) -> None:
        if self.market_type == "spot" or (symbol, leverage) in self._leverage_set:
            return
        with self._client() as ex:
            for params in self._leverage_calls():
                try:
                    ex.set_leverage(leverage, symbol, params)
                except ccxt.BadRequest as exc:
                    # Bybit 110043 "leverage not modified" is a no-op, not an error.
                    if "110043" not in str(exc) and "not modified" not in str(exc).lower():
                        raise translate(exc) from exc
                except Exception as exc:
                    raise translate(exc) from exc
        self._leverage_set.add((symbol, leverage))

    def account_setup_problems(self) -> list[str]:
        try:
            with self._client() as ex:
                if self.exchange_id == "okx":
                    return self._okx_setup(ex)
                if self.exchange_id == "bitget" and self.market_type == "linear":
                    return self._bitget_setup(ex)
                if self.exchange_id == "binanceusdm":
                    return self._binance_setup(ex)
        except GatewayError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        return []

    def _wanted_mode(self) -> str:
        return "hedge" if self.hedged else "one-way"

    def _okx_setup(self, ex: ccxt.Exchange) -> list[str]:
        config = ((ex.privateGetAccountConfig() or {}).get("data") or [{}])[0]
        problems = []
        level = str(config.get("acctLv") or "")
        if self.market_type == "linear" and level == "1":
            problems.append(
                "OKX account mode is Spot mode (acctLv 1), which cannot trade perpetual swaps: switch it to "
                "Spot and futures mode (or a margin mode) in OKX's trading settings"
            )
        if self.market_type == "linear":
            venue_hedged = config.get("posMode") == "long_short_mode"
            if venue_hedged != self.hedged:
                venue = "long/short (hedge)" if venue_hedged else "buy/sell (one-way, net)"
                problems.append(
                    f"OKX position mode is {venue} but this account is set to {self._wanted_mode()}: change one "
                    "of them to match (OKX allows the change only with no open position or order)"
                )
        return problems

    def _bitget_setup(self, ex: ccxt.Exchange) -> list[str]:
        primary = self._ensure_markets()
        ids = [m.get("id") for m in primary.markets.values() if m.get("swap") and m.get("settle") == "USDT"]
        symbol_id = "BTCUSDT" if "BTCUSDT" in ids else (ids[0] if ids else "BTCUSDT")
        data = (
            ex.privateMixGetV2MixAccountAccount(
                {"symbol": symbol_id, "productType": "USDT-FUTURES", "marginCoin": "USDT"}
            )
            or {}
        ).get("data") or {}
        problems = []
        venue_hedged = data.get("posMode") == "hedge_mode"
        if venue_hedged != self.hedged:
            venue = "hedge" if venue_hedged else "one-way"
            problems.append(
                f"Bitget position mode (USDT-M futures) is {venue} but this account is set to "
                f"{self._wanted_mode()}: change one of them to match (Bitget allows the change only with no open "
                "position or order)"
            )
        if self.margin_mode == "isolated" and data.get("assetMode") == "union":
            problems.append(
                "Bitget is in multi-assets mode, which allows cross margin only: switch Bitget to single-asset mode "
                "or set this account to cross"
            )
        return problems

    def _binance_setup(self, ex: ccxt.Exchange) -> list[str]:
        dual = (ex.fapiPrivateGetPositionSideDual() or {}).get("dualSidePosition")
        if dual in (True, "true"):
            return [
                "Binance USD-M is in Hedge Mode (dual-side positions); tvtrader trades Binance in one-way mode: "
                "switch Binance to One-way Mode (possible only with no open position or order)"
            ]
        return []
