"""Bybit V5 REST surface of the emulator (the paths ccxt 4.5 uses).

Verifies the real V5 HMAC-SHA256 signature over the raw query string (GET)
or raw JSON body (POST), the API key (10003, HTTP 401) and the recv window
(10002), then serves instruments, orders, executions, positions, the unified
wallet and leverage from the shared :class:`~.engine.Engine`.

Response bodies follow the shapes of real V5 responses closely enough that
ccxt parses them into complete orders, positions and balances. Every list
answer has ``nextPageCursor: ""``: ccxt follows any non-empty cursor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from .engine import FINAL_STATUSES, OPEN_STATUSES, Account, Engine, Execution, Order, Reject
from .markets import Market, fmt, step_decimals
from .wire import BookingEffects, WireRequest, WireResponse, json_response

__all__ = ["BYBIT_MESSAGES", "BybitVenue"]

# Default retMsg per retCode, used for rejections and for ``ret_code`` faults.
BYBIT_MESSAGES = {
    10001: "params error",
    10002: "invalid request, please check your server timestamp or recv_window param",
    10003: "API key is invalid.",
    10004: "error sign! please check your signature generation algorithm",
    10005: "Permission denied, please check your API key permissions.",
    10006: "Too many visits!",
    10010: "Unmatched IP, please check your API key's bound IP addresses.",
    10014: "Invalid duplicate request.",
    10016: "Internal System Error.",
    10017: "Route not found.",
    10018: "Exceeded the IP Rate Limit.",
    110001: "order not exists or too late to cancel",
    110004: "Insufficient wallet balance",
    110007: "ab not enough for new order",
    110017: "current position is zero, cannot fix reduce-only order qty",
    110043: "Set leverage not modified",
    110072: "OrderLinkedID is duplicate",
    110094: "Order does not meet minimum order value",
    170131: "Insufficient balance.",
    170134: "Order price has too many decimals.",
    170136: "Order quantity is lower than the minimum.",
    170137: "Order volume decimal too long",
    170140: "Order value exceeded lower limit.",
    170141: "Duplicate clientOrderId.",
    170213: "Order does not exist.",
}

# Engine rejection kind -> (linear retCode, spot retCode, retMsg override).
_REJECT_CODES = {
    "unknown_symbol": (10001, 10001, "Not supported symbols"),
    "invalid_param": (10001, 10001, None),
    "invalid_qty": (10001, 170137, "Qty invalid"),
    "invalid_price": (10001, 170134, "Price invalid"),
    "qty_too_small": (
        10001,
        170136,
        "The number of contracts exceeds minimum limit allowed",
    ),
    "qty_too_large": (
        10001,
        10001,
        "The number of contracts exceeds maximum limit allowed",
    ),
    "min_notional": (110094, 170140, None),
    "insufficient": (110007, 170131, None),
    "reduce_only": (110017, 110017, None),
    "duplicate_client_id": (110072, 170141, None),
    "invalid_client_id": (10001, 10001, "orderLinkId is invalid"),
    "not_found": (110001, 170213, None),
    "invalid_leverage": (10001, 10001, "leverage invalid"),
    "rate_limited": (10006, 10006, None),
    "trigger_rise": (110092, 110092, None),
    "trigger_fall": (110093, 110093, None),
}

_TIF = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "POSTONLY": "PostOnly"}


def _d(value: object, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Reject("invalid_param", f"{name} invalid") from None
    if not out.is_finite():
        raise Reject("invalid_param", f"{name} invalid")
    return out


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1")


class BybitVenue:
    """Routes, auth and response shapes of Bybit V5."""

    name = "bybit"

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
        # (method, path) -> (operation, private?, handler)
        self.routes: dict[tuple[str, str], tuple[str, bool, Callable]] = {
            ("GET", "/v5/market/time"): ("time", False, self._time),
            ("GET", "/v5/market/instruments-info"): (
                "markets",
                False,
                self._instruments,
            ),
            ("GET", "/v5/market/tickers"): ("tickers", False, self._tickers),
            ("GET", "/v5/user/query-api"): ("api_key_info", True, self._query_api),
            ("GET", "/v5/account/info"): ("account_info", True, self._account_info),
            ("GET", "/v5/asset/coin/query-info"): ("currencies", True, self._coins),
            ("POST", "/v5/order/create"): ("create_order", True, self._create),
            ("GET", "/v5/order/realtime"): ("query_order", True, self._realtime),
            ("GET", "/v5/order/history"): ("query_order", True, self._history),
            ("POST", "/v5/order/cancel"): ("cancel_order", True, self._cancel),
            ("GET", "/v5/execution/list"): ("executions", True, self._executions),
            ("GET", "/v5/position/list"): ("positions", True, self._positions),
            ("GET", "/v5/account/wallet-balance"): ("balance", True, self._wallet),
            ("POST", "/v5/position/set-leverage"): (
                "set_leverage",
                True,
                self._set_leverage,
            ),
        }

    # ------------------------------------------------------------ plumbing
    def describe(self, req: WireRequest) -> None:
        """Parse params and fill the facts fault rules and the log match on."""
        route = self.routes.get((req.method, req.path))
        req.operation = route[0] if route else "other"
        req.account = req.header("x-bapi-api-key")
        try:
            if req.method == "GET":
                req.params = dict(parse_qsl(req.query, keep_blank_values=True))
            else:
                parsed = json.loads(req.body) if req.body.strip() else {}
                req.params = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            req.params = {}
        symbol = req.params.get("symbol")
        req.symbol = str(symbol) if symbol else None
        cid = req.params.get("orderLinkId")
        req.client_order_id = str(cid) if cid else None

    def envelope(self, result: object, code: int = 0, msg: str = "OK") -> dict:
        return {
            "retCode": code,
            "retMsg": msg,
            "result": result,
            "retExtInfo": {},
            "time": self.engine.now_ms(),
        }

    def error(
        self,
        code: int,
        msg: str | None = None,
        *,
        status: int = 200,
        outcome: str | None = None,
        headers: dict | None = None,
    ) -> WireResponse:
        msg = msg or BYBIT_MESSAGES.get(code, "error")
        return json_response(
            status,
            self.envelope({}, code, msg),
            code=code,
            outcome=outcome or f"rejected:{code}",
            headers=headers,
        )

    def _reject(self, exc: Reject, category: str | None) -> WireResponse:
        linear, spot, msg = _REJECT_CODES.get(exc.kind, (10001, 10001, None))
        code = spot if category == "spot" else linear
        text = msg or BYBIT_MESSAGES.get(code) or exc.message
        if exc.kind == "invalid_param" and exc.message:
            text = f"params error: {exc.message}"
        return self.error(code, text)

    def not_found(self) -> WireResponse:
        return self.error(10017, status=404, outcome="not_found")

    def handle(self, req: WireRequest, effects: BookingEffects) -> WireResponse:
        route = self.routes.get((req.method, req.path))
        if route is None:
            return self.not_found()
        _, private, handler = route
        acct = None
        if private:
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
            return self.error(10001, "params error: malformed parameter")
        except Reject as exc:
            return self._reject(exc, req.params.get("category"))

    def _authenticate(self, req: WireRequest) -> WireResponse | None:
        key = req.header("x-bapi-api-key") or ""
        secret = self.secret_for(key) if key else None
        if secret is None:
            return self.error(10003, status=401, outcome="auth:10003")
        ts_text = req.header("x-bapi-timestamp") or ""
        recv_text = req.header("x-bapi-recv-window") or "5000"
        if not ts_text.isdigit() or not recv_text.isdigit():
            return self.error(10002, outcome="auth:10002")
        if self.check_recv_window:
            now = self.engine.now_ms()
            ts, recv = int(ts_text), int(recv_text)
            # Bybit's rule: server_time - recv_window <= timestamp < server_time + 1000
            if not (now - recv <= ts < now + 1000):
                msg = f"{BYBIT_MESSAGES[10002]}. req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv}]"
                return self.error(10002, msg, outcome="auth:10002")
        payload = ts_text + key + recv_text + (req.body if req.method == "POST" else req.query)
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        given = (req.header("x-bapi-sign") or "").lower()
        if not hmac.compare_digest(expected, given):
            return self.error(10004, outcome="auth:10004")
        return None

    def fault_error(self, code: int, msg: str | None, status: int | None) -> WireResponse:
        """Answer for a ``ret_code`` fault: the venue's error envelope."""
        return self.error(code, msg, status=status or 200, outcome=f"fault:ret_code:{code}")

    # -------------------------------------------------------------- public
    def _time(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        now_ns = time.time_ns() + self.engine.clock_offset_ms * 1_000_000
        result = {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}
        return json_response(200, self.envelope(result))

    def _instruments(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        p = req.params
        category = p.get("category", "")
        if category not in ("spot", "linear", "inverse", "option"):
            return self.error(10001, "params error: category invalid")
        rows = []
        status = p.get("status", "")
        # The emulator lists no PreLaunch/inverse/option instruments.
        if category in ("spot", "linear") and status in ("", "Trading"):
            with self.engine.lock:
                markets = list(self.engine.markets.values())
            for market in markets:
                if p.get("symbol") and market.symbol != p["symbol"]:
                    continue
                if p.get("baseCoin") and market.base != p["baseCoin"]:
                    continue
                if category == "spot":
                    if market.spot:
                        rows.append(self._spot_instrument(market))
                else:
                    rows.append(self._linear_instrument(market))
        result = {"category": category, "list": rows, "nextPageCursor": ""}
        return json_response(200, self.envelope(result))

    @staticmethod
    def _linear_instrument(m: Market) -> dict:
        return {
            "symbol": m.symbol,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "launchTime": str(m.launch_time_ms),
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(step_decimals(m.tick)),
            "leverageFilter": {
                "minLeverage": "1",
                "maxLeverage": f"{m.max_leverage}.00",
                "leverageStep": "0.01",
            },
            "priceFilter": {
                "minPrice": fmt(m.tick),
                "maxPrice": fmt(m.tick * 20_000_000),
                "tickSize": str(m.tick),
            },
            "lotSizeFilter": {
                "maxOrderQty": str(m.max_qty),
                "maxMktOrderQty": fmt(m.max_qty / 10),
                "minOrderQty": str(m.min_qty),
                "qtyStep": str(m.qty_step),
                "postOnlyMaxOrderQty": str(m.max_qty),
                "minNotionalValue": fmt(m.min_notional),
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "settleCoin": m.quote,
            "copyTrading": "both",
            "upperFundingRate": "0.00375",
            "lowerFundingRate": "-0.00375",
            "isPreListing": False,
            "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
            "displayName": "",
        }

    @staticmethod
    def _spot_instrument(m: Market) -> dict:
        return {
            "symbol": m.symbol,
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": str(m.spot_base_precision),
                "quotePrecision": "0.00000001",
                "minOrderQty": str(m.spot_min_qty),
                "maxOrderQty": str(m.spot_max_qty),
                "minOrderAmt": fmt(m.spot_min_amt),
                "maxOrderAmt": fmt(m.spot_max_amt),
            },
            "priceFilter": {"tickSize": str(m.spot_tick)},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        }

    def _tickers(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        p = req.params
        category = p.get("category", "")
        if category not in ("spot", "linear"):
            return json_response(200, self.envelope({"category": category, "list": []}))
        rows = []
        with self.engine.lock:
            for m in self.engine.markets.values():
                if p.get("symbol") and m.symbol != p["symbol"]:
                    continue
                if category == "spot" and not m.spot:
                    continue
                tick = m.spot_tick if category == "spot" else m.tick
                row = {
                    "symbol": m.symbol,
                    "lastPrice": fmt(m.price),
                    "bid1Price": fmt(m.price - tick),
                    "bid1Size": "1",
                    "ask1Price": fmt(m.price + tick),
                    "ask1Size": "1",
                    "prevPrice24h": fmt(m.price),
                    "price24hPcnt": "0",
                    "highPrice24h": fmt(m.price),
                    "lowPrice24h": fmt(m.price),
                    "turnover24h": "0",
                    "volume24h": "0",
                }
                if category == "linear":
                    row.update(
                        {
                            "indexPrice": fmt(m.price),
                            "markPrice": fmt(m.price),
                            "openInterest": "0",
                            "fundingRate": "0.0001",
                            "nextFundingTime": "0",
                        }
                    )
                rows.append(row)
        return json_response(200, self.envelope({"category": category, "list": rows}))

    # ------------------------------------------------------------- account
    def _query_api(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        result = {
            "id": "1",
            "note": "tvtrader exchange emulator",
            "apiKey": acct.key,
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": ["SpotTrade"],
                "Wallet": ["AccountTransfer"],
                "Options": [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": -1,
            "expiredAt": "",
            "createdAt": "2025-01-01T00:00:00Z",
            # A UTA account: ccxt sets enableUnifiedAccount from "uta".
            "unified": 0,
            "uta": 1,
            "userID": 100000001,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
        }
        return json_response(200, self.envelope(result))

    def _account_info(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        result = {
            "unifiedMarginStatus": 6,
            "marginMode": "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": str(self.engine.now_ms()),
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
        }
        return json_response(200, self.envelope(result))

    def _coins(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        with self.engine.lock:
            coins = ["USDT"] + [m.base for m in self.engine.markets.values()]
        rows = []
        for coin in coins:
            rows.append(
                {
                    "name": coin,
                    "coin": coin,
                    "remainAmount": "1000000",
                    "chains": [
                        {
                            "chainType": coin,
                            "confirmation": "12",
                            "withdrawFee": "1",
                            "depositMin": "0",
                            "withdrawMin": "1",
                            "chain": coin,
                            "chainDeposit": "1",
                            "chainWithdraw": "1",
                            "minAccuracy": "8",
                            "withdrawPercentageFee": "0",
                        }
                    ],
                }
            )
        return json_response(200, self.envelope({"rows": rows}))

    # -------------------------------------------------------------- orders
    def _create(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        category = p.get("category")
        if category not in ("linear", "spot"):
            return self.error(10001, "params error: category only support linear or spot")
        for name in ("symbol", "side", "orderType", "qty"):
            if p.get(name) in (None, ""):
                return self.error(10001, f"params error: {name} is required")
        if str(p.get("positionIdx", "0")) != "0":
            return self.error(10001, "position idx not match position mode")
        if p.get("orderFilter") not in (None, "", "Order"):
            return self.error(10001, "params error: spot TP/SL orders are not emulated")
        cid = str(p.get("orderLinkId") or "")
        headers = self._limit_headers(acct)
        try:
            self.engine.check_rate_limit(acct, req.path)
        except Reject:
            return self.error(10006, headers=headers, outcome="rate_limited:10006")
        if p.get("triggerPrice"):
            return self._create_conditional(p, acct, cid)
        tif = _TIF.get(str(p.get("timeInForce", "")).upper(), "")
        order = self.engine.place_order(
            acct,
            category=category,
            symbol=str(p["symbol"]),
            side=str(p["side"]),
            order_type=str(p["orderType"]),
            qty=_d(p["qty"], "qty"),
            price=_d(p["price"], "price") if p.get("price") not in (None, "") else None,
            client_order_id=cid,
            reduce_only=_truthy(p.get("reduceOnly", False)),
            time_in_force=tif,
            market_unit=str(p.get("marketUnit") or ""),
            partial_fraction=effects.partial_fraction,
            fill_after_lookups=effects.fill_after_lookups,
            invisible_ms=effects.invisible_ms,
            faults=effects.fault_names,
        )
        result = {"orderId": order.order_id, "orderLinkId": order.client_order_id}
        return json_response(
            200,
            self.envelope(result),
            headers=self._limit_headers(acct),
            order_id=order.order_id,
            booked=True,
        )

    def _create_conditional(self, p: dict, acct: Account, cid: str) -> WireResponse:
        """A linear conditional order (triggerPrice + triggerDirection 1 rising / 2 falling)
        at market; ours are reduce-only stop-losses and take-profits."""
        if p.get("category") != "linear":
            return self.error(10001, "params error: conditional orders are emulated on linear only")
        if str(p.get("orderType")) != "Market":
            return self.error(10001, "params error: conditional limit orders are not emulated")
        direction = {"1": "rise", "2": "fall"}.get(str(p.get("triggerDirection", "")))
        if direction is None:
            return self.error(10001, "params error: triggerDirection must be 1 or 2")
        if p.get("triggerBy") not in (None, "", "LastPrice"):
            return self.error(10001, "params error: only triggerBy=LastPrice is emulated")
        order = self.engine.place_conditional(
            acct,
            symbol=str(p["symbol"]),
            side=str(p["side"]),
            qty=_d(p["qty"], "qty"),
            client_order_id=cid,
            stop_kind="Stop",
            trigger_price=_d(p["triggerPrice"], "triggerPrice"),
            trigger_direction=direction,
            reduce_only=_truthy(p.get("reduceOnly", False)),
            close_position=_truthy(p.get("closeOnTrigger", False)),
        )
        result = {"orderId": order.order_id, "orderLinkId": order.client_order_id}
        return json_response(
            200, self.envelope(result), headers=self._limit_headers(acct), order_id=order.order_id, booked=True
        )

    def _limit_headers(self, acct: Account) -> dict[str, str]:
        limit = acct.rate_limit_per_second
        if limit is None:
            return {}
        now = time.monotonic()
        used = sum(1 for t in acct.create_times if now - t < 1.0)
        reset = int((time.time() + 1.0) * 1000)
        return {
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(max(0, limit - used)),
            "X-Bapi-Limit-Reset-Timestamp": str(reset),
        }

    @staticmethod
    def _limit(p: dict, default: int, maximum: int) -> int:
        try:
            return max(1, min(maximum, int(p.get("limit") or default)))
        except ValueError:
            return default

    def _list_filters(self, p: dict) -> dict:
        category = p.get("category")
        if category not in ("linear", "spot"):
            raise Reject("invalid_param", "category only support linear or spot")
        return {
            "category": category,
            "symbol": p.get("symbol") or None,
            "base_coin": p.get("baseCoin") or None,
            "settle_coin": p.get("settleCoin") or None,
        }

    def _realtime(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        filters = self._list_filters(p)
        order_id = p.get("orderId") or None
        link_id = p.get("orderLinkId") or None
        if (
            filters["category"] == "linear"
            and not (filters["symbol"] or filters["base_coin"] or filters["settle_coin"])
            and not (order_id or link_id)
        ):
            return self.error(
                10001,
                "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin",
            )
        if order_id or link_id:
            # Bybit's priority is orderId > orderLinkId; ccxt's literal
            # "orderId=None" therefore finds nothing, as on the real venue.
            statuses = None if self.engine.realtime_by_id_any_status else OPEN_STATUSES
            orders = self.engine.query(
                acct,
                order_id=order_id,
                client_order_id=None if order_id else link_id,
                statuses=statuses,
                **filters,
            )
        else:
            open_only = str(p.get("openOnly", "0"))
            statuses = OPEN_STATUSES if open_only == "0" else FINAL_STATUSES
            orders = self.engine.query(acct, statuses=statuses, **filters)
            if open_only != "0":
                orders = orders[:500]
        orders = orders[: self._limit(p, 20, 50)]
        rows = [self.order_row(o) for o in orders]
        result = {"category": filters["category"], "list": rows, "nextPageCursor": ""}
        return json_response(200, self.envelope(result))

    def _history(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        filters = self._list_filters(p)
        order_id = p.get("orderId") or None
        link_id = p.get("orderLinkId") or None
        if p.get("orderStatus"):
            statuses = {s for s in str(p["orderStatus"]).split(",") if s}
        elif order_id or link_id:
            statuses = None
        else:
            # Without a status filter the history lists final orders only.
            statuses = FINAL_STATUSES
        orders = self.engine.query(
            acct,
            order_id=order_id,
            client_order_id=None if order_id else link_id,
            statuses=statuses,
            **filters,
        )
        start, end = p.get("startTime"), p.get("endTime")
        if start:
            orders = [o for o in orders if o.created_ms >= int(start)]
        if end:
            orders = [o for o in orders if o.created_ms <= int(end)]
        orders = orders[: self._limit(p, 20, 50)]
        rows = [self.order_row(o) for o in orders]
        result = {"category": filters["category"], "list": rows, "nextPageCursor": ""}
        return json_response(200, self.envelope(result))

    def _cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        category = p.get("category")
        if category not in ("linear", "spot"):
            return self.error(10001, "params error: category only support linear or spot")
        if not p.get("symbol"):
            return self.error(10001, "params error: symbol is required")
        order_id = p.get("orderId") or None
        link_id = p.get("orderLinkId") or None
        if not (order_id or link_id):
            return self.error(10001, "params error: orderId or orderLinkId is required")
        order = self.engine.cancel(
            acct,
            category=category,
            symbol=str(p["symbol"]),
            order_id=str(order_id) if order_id else None,
            client_order_id=None if order_id else str(link_id),
        )
        result = {"orderId": order.order_id, "orderLinkId": order.client_order_id}
        return json_response(200, self.envelope(result), order_id=order.order_id)

    def order_row(self, o: Order) -> dict:
        """A V5 order-list item."""
        leaves = o.leaves_qty
        ref_price = o.price if o.price is not None else Decimal(0)
        row = {
            "orderId": o.order_id,
            "orderLinkId": o.client_order_id,
            "blockTradeId": "",
            "symbol": o.symbol,
            "price": fmt(o.price) if o.price is not None else "0",
            "qty": fmt(o.qty),
            "side": o.side,
            "isLeverage": "0" if o.category == "spot" else "",
            "positionIdx": 0,
            "orderStatus": o.status,
            "createType": "CreateByUser",
            "cancelType": "CancelByUser" if o.status in ("Cancelled", "Deactivated") else "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": fmt(o.avg_price) if o.cum_qty else "0",
            "leavesQty": fmt(leaves),
            "leavesValue": fmt(leaves * ref_price),
            "cumExecQty": fmt(o.cum_qty),
            "cumExecValue": fmt(o.cum_value),
            "cumExecFee": fmt(o.cum_fee),
            "cumFeeDetail": {o.fee_coin: fmt(o.cum_fee)} if o.cum_fee else {},
            "timeInForce": o.time_in_force,
            "orderType": o.order_type,
            "stopOrderType": o.stop_kind if o.conditional else "",
            "orderIv": "",
            "triggerPrice": fmt(o.trigger_price) if o.trigger_price is not None else "0",
            "takeProfit": "0",
            "stopLoss": "0",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": {"rise": 1, "fall": 2}.get(o.trigger_direction, 0),
            "triggerBy": "LastPrice" if o.conditional else "",
            "lastPriceOnCreated": fmt(o.last_price_on_created),
            "basePrice": fmt(o.last_price_on_created),
            "reduceOnly": o.reduce_only,
            "closeOnTrigger": o.close_position,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(o.created_ms),
            "updatedTime": str(o.updated_ms),
        }
        if o.category == "spot":
            # ccxt reads marketUnit to know whether qty is base or quote.
            row["marketUnit"] = o.market_unit or ("quoteCoin" if o.quote_qty is not None else "baseCoin")
        else:
            # ccxt treats a row with "tpslMode" as a contract order.
            row.update(
                {
                    "tpslMode": "",
                    "tpLimitPrice": "0",
                    "slLimitPrice": "0",
                    "ocoTriggerBy": "",
                }
            )
        return row

    def _executions(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        category = p.get("category")
        if category not in ("linear", "spot"):
            return self.error(10001, "params error: category only support linear or spot")
        exec_type = p.get("execType")
        execs = self.engine.executions(
            acct,
            category=category,
            symbol=p.get("symbol") or None,
            order_id=p.get("orderId") or None,
            client_order_id=None if p.get("orderId") else (p.get("orderLinkId") or None),
        )
        if exec_type and exec_type != "Trade":
            execs = []
        start, end = p.get("startTime"), p.get("endTime")
        if start:
            execs = [e for e in execs if e.time_ms >= int(start)]
        if end:
            execs = [e for e in execs if e.time_ms <= int(end)]
        execs = execs[: self._limit(p, 50, 100)]
        rows = [self.execution_row(e) for e in execs]
        result = {"category": category, "list": rows, "nextPageCursor": ""}
        return json_response(200, self.envelope(result))

    def execution_row(self, e: Execution) -> dict:
        """A V5 execution-list item (the private stream's ``execution`` rows too)."""
        mark = self.engine.markets[e.symbol].price
        return {
            "symbol": e.symbol,
            "orderId": e.order_id,
            "orderLinkId": e.client_order_id,
            "side": e.side,
            "orderPrice": fmt(e.order_price) if e.order_price is not None else "0",
            "orderQty": fmt(e.order_qty),
            "leavesQty": fmt(e.leaves_qty),
            "createType": "CreateByUser",
            "orderType": e.order_type,
            "stopOrderType": "",
            "execFee": fmt(e.fee),
            "execId": e.exec_id,
            "execPrice": fmt(e.price),
            "execQty": fmt(e.qty),
            "execType": "Trade",
            "execValue": fmt(e.value),
            "execTime": str(e.time_ms),
            "feeCurrency": e.fee_coin,
            "isMaker": e.is_maker,
            "feeRate": fmt(e.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": fmt(mark),
            "indexPrice": fmt(mark),
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": fmt(e.closed_size),
            "seq": e.seq,
            "extraFees": "",
        }

    # ------------------------------------------------------------ positions
    def _positions(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if p.get("category") != "linear":
            return self.error(10001, "params error: category only support linear")
        symbol, settle, base = p.get("symbol"), p.get("settleCoin"), p.get("baseCoin")
        if not (symbol or settle or base):
            return self.error(
                10001,
                "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin",
            )
        rows = []
        with self.engine.lock:
            if symbol:
                market = self.engine.market(symbol)
                # Queried by symbol, Bybit returns a flat row (side "") too.
                rows.append(self.position_row(acct, market))
            else:
                for sym, pos in sorted(acct.positions.items()):
                    market = self.engine.markets[sym]
                    if pos.size == 0:
                        continue
                    if settle and market.quote != settle:
                        continue
                    if base and market.base != base:
                        continue
                    rows.append(self.position_row(acct, market))
        rows = rows[: self._limit(p, 20, 200)]
        result = {"category": "linear", "list": rows, "nextPageCursor": ""}
        return json_response(200, self.envelope(result))

    def position_row(self, acct: Account, market: Market) -> dict:
        pos = acct.positions.get(market.symbol)
        size = pos.size if pos else Decimal(0)
        entry = pos.entry_price if pos else Decimal(0)
        lev = acct.leverage_for(market.symbol)
        mark = market.price
        value = abs(size) * entry
        im = value / lev
        mm = value * Decimal("0.005")
        upnl = size * (mark - entry)
        liq = bust = ""
        if size > 0:
            liq = fmt((entry * (1 - 1 / lev + Decimal("0.005"))).quantize(market.tick))
            bust = fmt((entry * (1 - 1 / lev)).quantize(market.tick))
        elif size < 0:
            liq = fmt((entry * (1 + 1 / lev - Decimal("0.005"))).quantize(market.tick))
            bust = fmt((entry * (1 + 1 / lev)).quantize(market.tick))
        side = "Buy" if size > 0 else "Sell" if size < 0 else ""
        now = str(self.engine.now_ms())
        return {
            "positionIdx": 0,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": market.symbol,
            "side": side,
            "size": fmt(abs(size)),
            "avgPrice": fmt(entry),
            "positionValue": fmt(value),
            "tradeMode": 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "adlRankIndicator": 2 if size else 0,
            "leverage": fmt(lev),
            "positionBalance": fmt(im),
            "markPrice": fmt(mark),
            "liqPrice": liq,
            "bustPrice": bust,
            "positionIM": fmt(im),
            "positionMM": fmt(mm),
            "positionIMByMp": fmt(abs(size) * mark / lev),
            "positionMMByMp": fmt(abs(size) * mark * Decimal("0.005")),
            "tpslMode": "Full",
            "takeProfit": "0",
            "stopLoss": "0",
            "trailingStop": "0",
            "unrealisedPnl": fmt(upnl),
            "curRealisedPnl": fmt(pos.realised_pnl if pos else Decimal(0)),
            "cumRealisedPnl": fmt(pos.cum_realised_pnl if pos else Decimal(0)),
            "sessionAvgPrice": "",
            "createdTime": str(pos.created_ms) if pos and pos.created_ms else now,
            "updatedTime": str(pos.updated_ms) if pos and pos.updated_ms else now,
            "seq": 1,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
        }

    def _wallet(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if p.get("accountType") != "UNIFIED":
            return self.error(10001, "accountType only support UNIFIED")
        wanted = {c for c in str(p.get("coin") or "").split(",") if c}
        with self.engine.lock:
            locked = self.engine.spot_locked(acct)
            upnl = self.engine.total_unrealised(acct)
            pos_im = self.engine.position_im(acct)
            ord_im = self.engine.order_im(acct)
            coins = []
            total_equity = Decimal(0)
            for coin, wallet in sorted(acct.balances.items()):
                if wanted and coin not in wanted:
                    continue
                if wallet == 0 and coin != "USDT":
                    continue
                if coin == "USDT":
                    price = Decimal(1)
                else:
                    price = self.engine.markets[f"{coin}USDT"].price
                is_usdt = coin == "USDT"
                coin_upnl = upnl if is_usdt else Decimal(0)
                equity = wallet + coin_upnl
                total_equity += equity * price
                coins.append(
                    {
                        "coin": coin,
                        "equity": fmt(equity),
                        "usdValue": fmt(equity * price),
                        "walletBalance": fmt(wallet),
                        "locked": fmt(locked.get(coin, Decimal(0))),
                        "spotHedgingQty": "0",
                        "borrowAmount": "0",
                        # Real UTA answers "" here; ccxt then derives "used".
                        "availableToWithdraw": "",
                        "availableToBorrow": "",
                        "accruedInterest": "0",
                        "totalOrderIM": fmt(ord_im if is_usdt else Decimal(0)),
                        "totalPositionIM": fmt(pos_im if is_usdt else Decimal(0)),
                        "totalPositionMM": fmt(pos_im / 20 if is_usdt else Decimal(0)),
                        "unrealisedPnl": fmt(coin_upnl),
                        "cumRealisedPnl": fmt(
                            sum(
                                (x.cum_realised_pnl for x in acct.positions.values()),
                                start=Decimal(0),
                            )
                            if is_usdt
                            else Decimal(0)
                        ),
                        "bonus": "0",
                        "marginCollateral": True,
                        "collateralSwitch": True,
                        "spotBorrow": "0",
                    }
                )
            available = self.engine.available(acct, "USDT")
        entry = {
            "accountType": "UNIFIED",
            "accountIMRate": fmt((pos_im + ord_im) / total_equity) if total_equity else "0",
            "accountMMRate": fmt(pos_im / 20 / total_equity) if total_equity else "0",
            "totalEquity": fmt(total_equity),
            "totalWalletBalance": fmt(total_equity - upnl),
            "totalMarginBalance": fmt(total_equity),
            "totalAvailableBalance": fmt(available),
            "totalPerpUPL": fmt(upnl),
            "totalInitialMargin": fmt(pos_im + ord_im),
            "totalMaintenanceMargin": fmt(pos_im / 20),
            "accountLTV": "0",
            "coin": coins,
        }
        return json_response(200, self.envelope({"list": [entry]}))

    def _set_leverage(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if p.get("category") != "linear":
            return self.error(10001, "params error: category only support linear")
        if not p.get("symbol"):
            return self.error(10001, "params error: symbol is required")
        buy, sell = p.get("buyLeverage"), p.get("sellLeverage")
        if buy in (None, "") or sell in (None, ""):
            return self.error(10001, "params error: buyLeverage and sellLeverage are required")
        if _d(buy, "buyLeverage") != _d(sell, "sellLeverage"):
            # One-way mode: both sides must be equal.
            return self.error(10001, "buy leverage must be equal to sell leverage")
        changed = self.engine.set_leverage(acct, str(p["symbol"]), _d(buy, "buyLeverage"))
        if not changed:
            return self.error(110043)
        return json_response(200, self.envelope({}))
