"""Binance USD-M futures (``fapi``) REST surface of the emulator, a subset.

Signed endpoints verify ``X-MBX-APIKEY`` and
``signature = HMAC_SHA256(secret, totalParams)`` where totalParams is the raw
query string concatenated with the raw form body (minus the signature), and
the ``timestamp``/``recvWindow`` rule (-1021). Errors use Binance's
``{"code": -2019, "msg": "..."}`` bodies with the HTTP statuses Binance uses,
so ccxt maps them the way it does in production *provided* ccxt still sees the
``https://fapi.binance.com/`` URL, i.e. the transport redirect (mode B) is used.

Semantics worth knowing: a ``newClientOrderId`` is rejected (-4116) only while
an earlier order with that id is still open; a MARKET order created with
``newOrderRespType=RESULT`` comes back filled.

``/fapi/v1/listenKey`` (POST/PUT/DELETE, API key header only) manages the
user data stream's key; the stream itself is :mod:`emulator.streams.binance`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from .engine import OPEN_STATUSES, Account, Engine, Order, Reject
from .markets import Market, fmt, step_decimals
from .wire import BookingEffects, WireRequest, WireResponse, json_response

__all__ = ["BINANCE_MESSAGES", "BinanceVenue"]

BINANCE_MESSAGES = {
    -1000: "An unknown error occured while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1003: (
        "Too many requests; current limit of IP is 2400 requests per minute."
        " Please use the websocket for live updates to avoid polling the API."
    ),
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1121: "Invalid symbol.",
    -1125: "This listenKey does not exist.",
    -2010: "NEW_ORDER_REJECTED",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4005: "Quantity greater than max quantity.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4028: "Leverage is not valid",
    -4061: "Order's position side does not match user's setting.",
    -4116: "ClientOrderId is duplicated.",
    -2021: "Order would immediately trigger.",
    -4164: "Order's notional must be no smaller than 5 (unless you choose reduce only).",
    -5022: "Due to the order could not be executed as maker, the Post Only order will be rejected.",
}

# HTTP status Binance uses with a code (default 400).
_HTTP_FOR_CODE = {-1003: 429, -1001: 503, -1007: 408, -2014: 401, -2015: 401}

_REJECT_CODES = {
    "unknown_symbol": -1121,
    "invalid_param": -1102,
    "invalid_qty": -1111,
    "invalid_price": -4014,
    # "LOT_SIZE" in the body is what ccxt matches for this one.
    "qty_too_small": -1013,
    "qty_too_large": -4005,
    "min_notional": -4164,
    "insufficient": -2019,
    "reduce_only": -2022,
    "duplicate_client_id": -4116,
    "invalid_client_id": -4015,
    "not_found": -2011,
    "invalid_leverage": -4028,
    "rate_limited": -1003,
    "post_only": -5022,
    "trigger_rise": -2021,
    "trigger_fall": -2021,
}

_STATUS = {
    "New": "NEW",
    "PartiallyFilled": "PARTIALLY_FILLED",
    "Filled": "FILLED",
    "Cancelled": "CANCELED",
    "PartiallyFilledCanceled": "CANCELED",
    "Rejected": "REJECTED",
}

_TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "GTX": "PostOnly", "GTD": "GTC"}
_TIF_OUT = {"PostOnly": "GTX"}


def _d(value: object, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Reject("invalid_param", f"{name} malformed") from None
    if not out.is_finite():
        raise Reject("invalid_param", f"{name} malformed")
    return out


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature=`` pair from a raw urlencoded string."""
    if not raw:
        return "", None
    kept, sig = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            sig = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), sig


class BinanceVenue:
    """Routes, auth and response shapes of Binance USD-M futures."""

    name = "binance"

    def __init__(
        self,
        engine: Engine,
        secret_for: Callable[[str], str | None],
        *,
        check_recv_window: bool = True,
    ) -> None:
        self.engine = engine
        self.secret_for = secret_for
        self.check_recv_window = check_recv_window
        # The user data stream's listenKeys (set by the server, shared with the stream).
        self.listen_keys = None
        # (method, path) -> (operation, signed? or "key": API key header only, handler)
        self.routes: dict[tuple[str, str], tuple[str, bool, Callable]] = {
            ("GET", "/fapi/v1/ping"): ("ping", False, self._ping),
            ("GET", "/fapi/v1/time"): ("time", False, self._time),
            ("GET", "/fapi/v1/exchangeInfo"): ("markets", False, self._exchange_info),
            ("GET", "/fapi/v1/ticker/price"): ("tickers", False, self._ticker_price),
            ("POST", "/fapi/v1/order"): ("create_order", True, self._create),
            ("GET", "/fapi/v1/order"): ("query_order", True, self._query),
            ("DELETE", "/fapi/v1/order"): ("cancel_order", True, self._cancel),
            ("GET", "/fapi/v1/openOrders"): ("query_order", True, self._open_orders),
            # Conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET): the algo API.
            ("POST", "/fapi/v1/algoOrder"): ("create_order", True, self._algo_create),
            ("GET", "/fapi/v1/algoOrder"): ("query_order", True, self._algo_query),
            ("DELETE", "/fapi/v1/algoOrder"): ("cancel_order", True, self._algo_cancel),
            ("GET", "/fapi/v1/openAlgoOrders"): ("query_order", True, self._algo_open),
            ("GET", "/fapi/v1/userTrades"): ("executions", True, self._user_trades),
            ("GET", "/fapi/v3/positionRisk"): (
                "positions",
                True,
                self._position_risk_v3,
            ),
            ("GET", "/fapi/v2/positionRisk"): (
                "positions",
                True,
                self._position_risk_v2,
            ),
            ("GET", "/fapi/v1/leverageBracket"): (
                "leverage_brackets",
                True,
                self._leverage_bracket,
            ),
            ("GET", "/fapi/v3/account"): ("balance", True, self._account),
            ("GET", "/fapi/v2/account"): ("balance", True, self._account),
            ("POST", "/fapi/v1/leverage"): ("set_leverage", True, self._set_leverage),
            ("GET", "/fapi/v1/positionSide/dual"): ("account_info", True, self._dual),
            ("POST", "/fapi/v1/listenKey"): ("listen_key_create", "key", self._listen_key),
            ("PUT", "/fapi/v1/listenKey"): ("listen_key_keepalive", "key", self._listen_key),
            ("DELETE", "/fapi/v1/listenKey"): ("listen_key_delete", "key", self._listen_key),
            # fetchCurrencies when credentials are set and has.fetchCurrencies
            # is left on; answered so that default options work, with no coins.
            ("GET", "/sapi/v1/capital/config/getall"): (
                "currencies",
                True,
                self._coins,
            ),
        }

    # ------------------------------------------------------------ plumbing
    def describe(self, req: WireRequest) -> None:
        route = self.routes.get((req.method, req.path))
        req.operation = route[0] if route else "other"
        req.account = req.header("x-mbx-apikey")
        params = dict(parse_qsl(req.query, keep_blank_values=True))
        ctype = (req.header("content-type") or "").lower()
        if req.body and ("urlencoded" in ctype or not ctype):
            params.update(parse_qsl(req.body, keep_blank_values=True))
        params.pop("signature", None)
        req.params = params
        req.symbol = params.get("symbol") or None
        req.client_order_id = (
            params.get("newClientOrderId") or params.get("origClientOrderId") or params.get("clientAlgoId") or None
        )

    def error(
        self,
        code: int,
        msg: str | None = None,
        *,
        status: int | None = None,
        outcome: str | None = None,
    ) -> WireResponse:
        body = {"code": code, "msg": msg or BINANCE_MESSAGES.get(code, "error")}
        return json_response(
            status or _HTTP_FOR_CODE.get(code, 400),
            body,
            code=code,
            outcome=outcome or f"rejected:{code}",
        )

    def _reject(self, exc: Reject, *, querying: bool = False) -> WireResponse:
        code = _REJECT_CODES.get(exc.kind, -1102)
        if exc.kind == "not_found" and querying:
            code = -2013
        msg = BINANCE_MESSAGES.get(code)
        if code == -1013:
            msg = "Filter failure: LOT_SIZE"
        elif code == -1102 and exc.message:
            msg = f"Parameter error: {exc.message}"
        elif code == -4164 and exc.message:
            minimum = exc.message.rsplit(" ", 1)[-1]
            msg = f"Order's notional must be no smaller than {minimum} (unless you choose reduce only)."
        elif code == -4028 and exc.message:
            msg = f"Leverage {exc.message.split()[1]} is not valid"
        return self.error(code, msg)

    def not_found(self) -> WireResponse:
        return WireResponse(status=404, body=b"", content_type="text/html", outcome="not_found")

    def fault_error(self, code: int, msg: str | None, status: int | None) -> WireResponse:
        return self.error(code, msg, status=status, outcome=f"fault:ret_code:{code}")

    def handle(self, req: WireRequest, effects: BookingEffects) -> WireResponse:
        route = self.routes.get((req.method, req.path))
        if route is None:
            return self.not_found()
        _, signed, handler = route
        acct = None
        if signed == "key":
            key = req.header("x-mbx-apikey") or ""
            if not key or self.secret_for(key) is None:
                return self.error(-2014 if not key else -2015, outcome="auth:-2015")
            acct = self.engine.account(self.name, key)
        elif signed:
            denied = self._authenticate(req)
            if denied is not None:
                return denied
            acct = self.engine.account(self.name, req.account or "")
        try:
            # Handlers are sub-millisecond; running them under the engine
            # lock gives every answer a consistent snapshot. Faults that
            # sleep do so outside this lock, so they never block others.
            with self.engine.lock:
                return handler(req, acct, effects)
        except (ValueError, TypeError):
            # e.g. startTime=abc: a parameter error, not an emulator failure.
            return self.error(-1102)
        except Reject as exc:
            return self._reject(exc, querying=req.method == "GET")

    def _authenticate(self, req: WireRequest) -> WireResponse | None:
        key = req.header("x-mbx-apikey") or ""
        if not key:
            return self.error(-2014, outcome="auth:-2014")
        secret = self.secret_for(key)
        if secret is None:
            return self.error(-2015, outcome="auth:-2015")
        query, q_sig = _strip_signature(req.query)
        body, b_sig = _strip_signature(req.body)
        given = q_sig or b_sig
        if not given:
            return self.error(
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
                outcome="auth:-1102",
            )
        # Binance signs totalParams = query string + request body, as sent.
        payload = query + body
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.lower()):
            return self.error(-1022, outcome="auth:-1022")
        ts_text = req.params.get("timestamp", "")
        if not ts_text.isdigit():
            return self.error(
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
                outcome="auth:-1102",
            )
        recv_text = req.params.get("recvWindow", "5000")
        if not recv_text.isdigit() or int(recv_text) > 60000:
            return self.error(
                -1131 if recv_text.isdigit() else -1102,
                "recvWindow must be less than 60000",
                outcome="auth:-1131",
            )
        if self.check_recv_window:
            now, ts, recv = self.engine.now_ms(), int(ts_text), int(recv_text)
            # Binance: reject if timestamp >= serverTime + 1000 or
            # serverTime - timestamp > recvWindow.
            if ts >= now + 1000 or now - ts > recv:
                return self.error(-1021, outcome="auth:-1021")
        return None

    # -------------------------------------------------------------- public
    def _ping(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        return json_response(200, {})

    def _time(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        return json_response(200, {"serverTime": self.engine.now_ms()})

    def _exchange_info(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        with self.engine.lock:
            markets = list(self.engine.markets.values())
        body = {
            "timezone": "UTC",
            "serverTime": self.engine.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 1200,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": 300,
                },
            ],
            "exchangeFilters": [],
            "assets": [
                {
                    "asset": "USDT",
                    "marginAvailable": True,
                    "autoAssetExchange": "-10000",
                }
            ],
            "symbols": [self._symbol_info(m) for m in markets],
        }
        return json_response(200, body)

    @staticmethod
    def _symbol_info(m: Market) -> dict:
        return {
            "symbol": m.symbol,
            "pair": m.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": m.launch_time_ms,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": m.base,
            "quoteAsset": m.quote,
            "marginAsset": m.quote,
            "pricePrecision": step_decimals(m.tick),
            "quantityPrecision": step_decimals(m.qty_step),
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(m.tick),
                    "maxPrice": fmt(m.tick * 20_000_000),
                    "tickSize": str(m.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": str(m.min_qty),
                    "maxQty": str(m.max_qty),
                    "stepSize": str(m.qty_step),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": str(m.min_qty),
                    "maxQty": fmt(m.max_qty / 10),
                    "stepSize": str(m.qty_step),
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": fmt(m.binance_min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def _ticker_price(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        now = self.engine.now_ms()
        symbol = req.params.get("symbol")
        with self.engine.lock:
            if symbol:
                m = self.engine.market(symbol)
                return json_response(200, {"symbol": m.symbol, "price": fmt(m.price), "time": now})
            rows = [{"symbol": m.symbol, "price": fmt(m.price), "time": now} for m in self.engine.markets.values()]
        return json_response(200, rows)

    def _coins(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        return json_response(200, [])

    def _dual(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        return json_response(200, {"dualSidePosition": acct.hedge_mode})

    def _listen_key(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        keys = self.listen_keys
        if keys is None:
            return self.not_found()
        if req.method == "POST":
            return json_response(200, {"listenKey": keys.create(acct.key)})
        if req.method == "PUT":
            key = keys.keepalive(acct.key)
            return json_response(200, {"listenKey": key}) if key else self.error(-1125)
        keys.delete(acct.key)
        return json_response(200, {})

    # -------------------------------------------------------------- orders
    def order_body(self, o: Order, *, ack: bool = False, with_time: bool = True) -> dict:
        """A USD-M order object; ``ack`` renders the pre-fill ACK state."""
        status = "NEW" if ack else _STATUS.get(o.status, o.status.upper())
        filled = Decimal(0) if ack else o.cum_qty
        value = Decimal(0) if ack else o.cum_value
        avg = (value / filled) if filled else Decimal(0)
        market = self.engine.markets[o.symbol]
        body = {
            "orderId": int(o.order_id),
            "symbol": o.symbol,
            "status": status,
            "clientOrderId": o.client_order_id,
            "price": fmt(o.price) if o.price is not None else "0",
            "avgPrice": fmt(avg.quantize(market.tick)) if filled else "0",
            "origQty": fmt(o.qty),
            "executedQty": fmt(filled),
            "cumQty": fmt(filled),
            "cumQuote": fmt(value),
            "timeInForce": _TIF_OUT.get(o.time_in_force, o.time_in_force),
            "type": o.order_type.upper(),
            "reduceOnly": o.reduce_only,
            "closePosition": False,
            "side": o.side.upper(),
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": o.order_type.upper(),
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": o.created_ms if ack else o.updated_ms,
        }
        if with_time:
            body["time"] = o.created_ms
        return body

    def _create(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                return self.error(
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        order_type = p["type"].upper()
        if order_type not in ("MARKET", "LIMIT"):
            return self.error(-1116, f"Invalid orderType: {order_type} is not emulated.")
        if not p.get("quantity"):
            return self.error(
                -1102,
                "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            )
        if p.get("positionSide", "BOTH").upper() != "BOTH" or acct.hedge_mode:
            # Only one-way (BOTH) orders are emulated; an account switched to Hedge Mode
            # (POST /__emulator/position_mode) refuses them as Binance does.
            return self.error(-4061)
        tif = ""
        if order_type == "LIMIT":
            if not p.get("price"):
                return self.error(
                    -1102,
                    "Mandatory parameter 'price' was not sent, was empty/null, or malformed.",
                )
            if not p.get("timeInForce"):
                return self.error(
                    -1102,
                    "Mandatory parameter 'timeinforce' was not sent, was empty/null, or malformed.",
                )
            tif = _TIF.get(p["timeInForce"].upper(), "")
            if not tif:
                return self.error(-1115, "Invalid timeInForce.")
        side = p["side"].upper()
        if side not in ("BUY", "SELL"):
            return self.error(-1117, "Invalid side.")
        try:
            self.engine.check_rate_limit(acct, req.path)
        except Reject:
            return self.error(-1003, outcome="rate_limited:-1003")
        order = self.engine.place_order(
            acct,
            category="linear",
            symbol=p["symbol"],
            side="Buy" if side == "BUY" else "Sell",
            order_type="Market" if order_type == "MARKET" else "Limit",
            qty=_d(p["quantity"], "quantity"),
            price=_d(p["price"], "price") if p.get("price") else None,
            client_order_id=p.get("newClientOrderId", ""),
            reduce_only=p.get("reduceOnly", "false").lower() == "true",
            time_in_force=tif,
            partial_fraction=effects.partial_fraction,
            fill_after_lookups=effects.fill_after_lookups,
            invisible_ms=effects.invisible_ms,
            faults=effects.fault_names,
        )
        ack = p.get("newOrderRespType", "ACK").upper() == "ACK"
        return json_response(
            200,
            self.order_body(order, ack=ack, with_time=False),
            order_id=order.order_id,
            booked=True,
        )

    # --------------------------------------------------------------- algo orders
    _ALGO_TYPES = {
        "STOP_MARKET": "StopLoss",
        "TAKE_PROFIT_MARKET": "TakeProfit",
        "TRAILING_STOP_MARKET": "TrailingStop",
    }
    _ALGO_STATUS = {"Untriggered": "NEW", "Deactivated": "CANCELED", "Cancelled": "CANCELED"}

    def algo_body(self, o: Order) -> dict:
        kind = {v: k for k, v in self._ALGO_TYPES.items()}.get(o.stop_kind, "STOP_MARKET")
        fired = o.triggered_ms and o.cum_qty > 0
        if o.status == "Deactivated" and o.triggered_ms:
            status = "EXPIRED"  # fired with nothing left to reduce
        else:
            status = "FINISHED" if fired else self._ALGO_STATUS.get(o.status, "NEW")
        market = self.engine.markets[o.symbol]
        return {
            "algoId": int(o.order_id),
            "clientAlgoId": o.client_order_id,
            "algoType": "CONDITIONAL",
            "orderType": kind,
            "symbol": o.symbol,
            "side": o.side.upper(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": fmt(o.qty) if not o.close_position else "0",
            "algoStatus": status,
            "triggerPrice": fmt(o.trigger_price) if o.trigger_price is not None else "0",
            "price": "0",
            "callbackRate": fmt(o.trail_rate * 100) if o.trail_rate is not None else None,
            "activatePrice": None,
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": o.close_position,
            "priceProtect": False,
            "reduceOnly": o.reduce_only and not o.close_position,
            "createTime": o.created_ms,
            "updateTime": o.updated_ms,
            "triggerTime": o.triggered_ms,
            "goodTillDate": 0,
            "actualOrderId": o.order_id if fired else "",
            "actualPrice": fmt((o.cum_value / o.cum_qty).quantize(market.tick)) if fired else "0",
        }

    def _algo_create(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if str(p.get("algoType", "")).upper() != "CONDITIONAL":
            return self.error(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                return self.error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        order_type = str(p["type"]).upper()
        if order_type not in self._ALGO_TYPES:
            return self.error(-1116, f"Invalid orderType: {order_type} is not emulated.")
        side = str(p["side"]).upper()
        if side not in ("BUY", "SELL"):
            return self.error(-1117, "Invalid side.")
        if p.get("positionSide", "BOTH").upper() != "BOTH" or acct.hedge_mode:
            return self.error(-4061)
        close_position = str(p.get("closePosition", "false")).lower() == "true"
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        if close_position and reduce_only:
            return self.error(-1106, "Parameter 'reduceonly' sent when not required.")
        if close_position and p.get("quantity"):
            return self.error(-1106, "Parameter 'quantity' sent when not required.")
        if not close_position and not p.get("quantity"):
            return self.error(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        cid = str(p.get("clientAlgoId") or "")
        if cid and not re.match(r"^[.A-Z:/a-z0-9_-]{1,36}$", cid):
            return self.error(-4015)
        trigger = direction = None
        trail_rate = None
        if order_type == "TRAILING_STOP_MARKET":
            if close_position:
                return self.error(-1106, "Parameter 'closePosition' sent when not required.")
            rate = _d(p.get("callbackRate"), "callbackRate") if p.get("callbackRate") else None
            if rate is None or not Decimal("0.1") <= rate <= Decimal("10"):
                return self.error(-2007, "Invalid callBackRate.")
            trail_rate = rate / 100
        else:
            if not p.get("triggerPrice"):
                return self.error(
                    -1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed."
                )
            trigger = _d(p["triggerPrice"], "triggerPrice")
            stop = order_type == "STOP_MARKET"
            # A sell stop fires on a fall, a sell take-profit on a rise; a buy the other way.
            direction = "fall" if stop == (side == "SELL") else "rise"
        try:
            self.engine.check_rate_limit(acct, req.path)
        except Reject:
            return self.error(-1003, outcome="rate_limited:-1003")
        order = self.engine.place_conditional(
            acct,
            symbol=p["symbol"],
            side="Buy" if side == "BUY" else "Sell",
            qty=_d(p["quantity"], "quantity") if p.get("quantity") else None,
            client_order_id=cid,
            stop_kind=self._ALGO_TYPES[order_type],
            trigger_price=trigger,
            trigger_direction=direction or "",
            trail_rate=trail_rate,
            reduce_only=reduce_only,
            close_position=close_position,
        )
        return json_response(200, self.algo_body(order), order_id=order.order_id, booked=True)

    def _algo_find(self, acct: Account, p: dict) -> Order | None:
        algo_id = str(p.get("algoId") or "") or None
        cid = p.get("clientAlgoId") or None
        if not (algo_id or cid):
            raise Reject("invalid_param", "Either algoId or clientAlgoId must be sent.")
        order = self.engine.lookup_one(
            acct, category="linear", symbol=p.get("symbol") or None, order_id=algo_id, client_order_id=cid
        )
        return order if order is not None and order.conditional else None

    def _algo_query(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        order = self._algo_find(acct, req.params)
        if order is None:
            return self.error(-2013)
        return json_response(200, self.algo_body(order))

    def _algo_cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        order = self._algo_find(acct, req.params)
        if order is None or order.status != "Untriggered":
            return self.error(-2011)
        self.engine.cancel(acct, category="linear", symbol=None, order_id=order.order_id)
        body = {"algoId": int(order.order_id), "clientAlgoId": order.client_order_id, "code": "200", "msg": "success"}
        return json_response(200, body, order_id=order.order_id)

    def _algo_open(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        orders = self.engine.query(
            acct, category="linear", symbol=req.params.get("symbol") or None, statuses=frozenset({"Untriggered"})
        )
        return json_response(200, [self.algo_body(o) for o in orders if o.conditional])

    def _order_ref(self, p: dict) -> tuple[str | None, str | None]:
        order_id = p.get("orderId") or None
        cid = p.get("origClientOrderId") or None
        if not p.get("symbol"):
            raise Reject("invalid_param", "Mandatory parameter 'symbol' was not sent")
        if not (order_id or cid):
            raise Reject("invalid_param", "Either orderId or origClientOrderId must be sent.")
        return order_id, cid

    def _query(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        order_id, cid = self._order_ref(req.params)
        order = self.engine.lookup_one(
            acct,
            category="linear",
            symbol=req.params["symbol"],
            order_id=order_id,
            client_order_id=None if order_id else cid,
        )
        if order is None or (order.conditional and not order.triggered_ms):
            return self.error(-2013)  # an algo order is not an order until it fires
        return json_response(200, self.order_body(order))

    def _cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        order_id, cid = self._order_ref(req.params)
        try:
            order = self.engine.cancel(
                acct,
                category="linear",
                symbol=req.params["symbol"],
                order_id=order_id,
                client_order_id=None if order_id else cid,
            )
        except Reject as exc:
            return self._reject(exc)
        return json_response(200, self.order_body(order, with_time=False), order_id=order.order_id)

    def _open_orders(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        orders = self.engine.query(
            acct,
            category="linear",
            symbol=req.params.get("symbol") or None,
            statuses=OPEN_STATUSES,
        )
        return json_response(200, [self.order_body(o) for o in orders if not o.conditional])

    def _user_trades(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if not p.get("symbol"):
            return self.error(
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        execs = self.engine.executions(
            acct,
            category="linear",
            symbol=p["symbol"],
            order_id=p.get("orderId") or None,
        )
        rows = []
        for e in reversed(execs[: int(p.get("limit") or 500)]):
            rows.append(
                {
                    "buyer": e.side == "Buy",
                    "commission": fmt(e.fee),
                    "commissionAsset": e.fee_coin,
                    "id": e.seq,
                    "maker": e.is_maker,
                    "orderId": int(e.order_id),
                    "price": fmt(e.price),
                    "qty": fmt(e.qty),
                    "quoteQty": fmt(e.value),
                    "realizedPnl": "0",
                    "side": e.side.upper(),
                    "positionSide": "BOTH",
                    "symbol": e.symbol,
                    "time": e.time_ms,
                }
            )
        return json_response(200, rows)

    # ------------------------------------------------------------ positions
    def _position_numbers(self, acct: Account, m: Market) -> dict:
        pos = acct.positions.get(m.symbol)
        size = pos.size if pos else Decimal(0)
        entry = pos.entry_price if pos else Decimal(0)
        lev = acct.leverage_for(m.symbol)
        notional = size * m.price
        liq = Decimal(0)
        if size > 0:
            liq = (entry * (1 - 1 / lev + Decimal("0.004"))).quantize(m.tick)
        elif size < 0:
            liq = (entry * (1 + 1 / lev - Decimal("0.004"))).quantize(m.tick)
        return {
            "size": size,
            "entry": entry,
            "lev": lev,
            "notional": notional,
            "upnl": size * (m.price - entry),
            "im": abs(notional) / lev,
            "mm": abs(notional) * Decimal("0.004"),
            "liq": liq,
            "updated": pos.updated_ms if pos else 0,
        }

    def _position_rows(self, acct: Account, symbol: str | None, *, include_flat: bool):
        with self.engine.lock:
            if symbol:
                markets = [self.engine.market(symbol)]
            else:
                markets = list(self.engine.markets.values())
            out = []
            for m in markets:
                n = self._position_numbers(acct, m)
                if n["size"] == 0 and not include_flat:
                    continue
                out.append((m, n))
            return out

    def _position_risk_v3(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        rows = []
        # v3 lists only symbols with a position.
        for m, n in self._position_rows(acct, req.params.get("symbol"), include_flat=False):
            rows.append(
                {
                    "symbol": m.symbol,
                    "positionSide": "BOTH",
                    "positionAmt": fmt(n["size"]),
                    "entryPrice": fmt(n["entry"]),
                    "breakEvenPrice": fmt(n["entry"]),
                    "markPrice": fmt(m.price),
                    "unRealizedProfit": fmt(n["upnl"]),
                    "liquidationPrice": fmt(n["liq"]),
                    "isolatedMargin": "0",
                    "notional": fmt(n["notional"]),
                    "marginAsset": m.quote,
                    "isolatedWallet": "0",
                    "initialMargin": fmt(n["im"]),
                    "maintMargin": fmt(n["mm"]),
                    "positionInitialMargin": fmt(n["im"]),
                    "openOrderInitialMargin": "0",
                    "adl": 2,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": n["updated"],
                }
            )
        return json_response(200, rows)

    def _position_risk_v2(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        rows = []
        for m, n in self._position_rows(acct, req.params.get("symbol"), include_flat=True):
            rows.append(
                {
                    "symbol": m.symbol,
                    "positionAmt": fmt(n["size"]),
                    "entryPrice": fmt(n["entry"]),
                    "breakEvenPrice": fmt(n["entry"]),
                    "markPrice": fmt(m.price),
                    "unRealizedProfit": fmt(n["upnl"]),
                    "liquidationPrice": fmt(n["liq"]),
                    "leverage": fmt(n["lev"]),
                    "maxNotionalValue": "1000000",
                    "marginType": "cross",
                    "isolatedMargin": "0",
                    "isAutoAddMargin": "false",
                    "positionSide": "BOTH",
                    "notional": fmt(n["notional"]),
                    "isolatedWallet": "0",
                    "updateTime": n["updated"],
                }
            )
        return json_response(200, rows)

    def _leverage_bracket(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        symbol = req.params.get("symbol")
        with self.engine.lock:
            markets = [self.engine.market(symbol)] if symbol else list(self.engine.markets.values())
        entries = []
        for m in markets:
            caps = [
                (50_000, "0.004"),
                (600_000, "0.005"),
                (3_000_000, "0.01"),
                (12_000_000, "0.025"),
                (70_000_000, "0.05"),
            ]
            brackets, floor = [], 0
            lev = m.max_leverage
            for i, (cap, mmr) in enumerate(caps, start=1):
                brackets.append(
                    {
                        "bracket": i,
                        "initialLeverage": max(1, lev),
                        "notionalCap": cap,
                        "notionalFloor": floor,
                        "maintMarginRatio": float(mmr),
                        "cum": 0.0,
                    }
                )
                floor, lev = cap, lev // 2
            entries.append({"symbol": m.symbol, "notionalCoef": 1.0, "brackets": brackets})
        # With a symbol Binance answers the object itself, else a list.
        return json_response(200, entries[0] if symbol else entries)

    def _account(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        v2 = req.path.startswith("/fapi/v2/")
        with self.engine.lock:
            wallet = acct.balances.get("USDT", Decimal(0))
            upnl = self.engine.total_unrealised(acct)
            pos_im = self.engine.position_im(acct)
            ord_im = self.engine.order_im(acct)
            available = self.engine.available(acct, "USDT")
            positions = self._position_rows(acct, None, include_flat=v2)
        margin_balance = wallet + upnl
        now = self.engine.now_ms()
        asset = {
            "asset": "USDT",
            "walletBalance": fmt(wallet),
            "unrealizedProfit": fmt(upnl),
            "marginBalance": fmt(margin_balance),
            "maintMargin": fmt(pos_im / 25),
            "initialMargin": fmt(pos_im + ord_im),
            "positionInitialMargin": fmt(pos_im),
            "openOrderInitialMargin": fmt(ord_im),
            "crossWalletBalance": fmt(wallet),
            "crossUnPnl": fmt(upnl),
            "availableBalance": fmt(available),
            "maxWithdrawAmount": fmt(max(available, Decimal(0))),
            # ccxt skips assets whose updateTime is 0.
            "updateTime": now,
        }
        if v2:
            asset["marginAvailable"] = True
        pos_rows = []
        for m, n in positions:
            row = {
                "symbol": m.symbol,
                "positionSide": "BOTH",
                "positionAmt": fmt(n["size"]),
                "unrealizedProfit": fmt(n["upnl"]),
                "isolatedMargin": "0",
                "notional": fmt(n["notional"]),
                "isolatedWallet": "0",
                "initialMargin": fmt(n["im"]),
                "maintMargin": fmt(n["mm"]),
                "updateTime": n["updated"],
            }
            if v2:
                row.update(
                    {
                        "leverage": fmt(n["lev"]),
                        "entryPrice": fmt(n["entry"]),
                        "breakEvenPrice": fmt(n["entry"]),
                        "maxNotional": "1000000",
                        "isolated": False,
                        "positionInitialMargin": fmt(n["im"]),
                        "openOrderInitialMargin": "0",
                        "bidNotional": "0",
                        "askNotional": "0",
                    }
                )
            pos_rows.append(row)
        body = {
            "totalInitialMargin": fmt(pos_im + ord_im),
            "totalMaintMargin": fmt(pos_im / 25),
            "totalWalletBalance": fmt(wallet),
            "totalUnrealizedProfit": fmt(upnl),
            "totalMarginBalance": fmt(margin_balance),
            "totalPositionInitialMargin": fmt(pos_im),
            "totalOpenOrderInitialMargin": fmt(ord_im),
            "totalCrossWalletBalance": fmt(wallet),
            "totalCrossUnPnl": fmt(upnl),
            "availableBalance": fmt(available),
            "maxWithdrawAmount": fmt(max(available, Decimal(0))),
            "assets": [asset],
            "positions": pos_rows,
        }
        if v2:
            body.update(
                {
                    "feeTier": 0,
                    "canTrade": True,
                    "canDeposit": True,
                    "canWithdraw": True,
                    "updateTime": 0,
                    "multiAssetsMargin": False,
                    "tradeGroupId": -1,
                }
            )
        return json_response(200, body)

    def _set_leverage(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if not p.get("symbol") or not p.get("leverage"):
            return self.error(-1102)
        lev = p["leverage"]
        if not lev.isdigit():
            return self.error(-4028, f"Leverage {lev} is not valid")
        # Binance answers the same body whether or not the value changed.
        self.engine.set_leverage(acct, p["symbol"], Decimal(lev))
        market = self.engine.market(p["symbol"])
        return json_response(
            200,
            {
                "leverage": int(lev),
                "maxNotionalValue": "1000000",
                "symbol": market.symbol,
            },
        )
