"""Bitget (classic account, API v2) REST surface of the emulator: USDT-M
futures (``/api/v2/mix/...``) and spot (``/api/v2/spot/...``), the paths ccxt 4.5
uses.

Private requests carry ``ACCESS-KEY``, ``ACCESS-TIMESTAMP`` (ms),
``ACCESS-PASSPHRASE`` and ``ACCESS-SIGN`` = base64(HMAC_SHA256(secret,
timestamp + METHOD + path [+ "?" + query] + body)); a timestamp more than 30 s
away from the server's clock is refused (40008), as are a missing or unknown
key (40001/40006), a wrong passphrase (40012) and a bad signature (40009).

Every answer is ``{"code": "00000", "msg": "success", "requestTime": ms,
"data": ...}``; errors carry Bitget's code with HTTP 400 (429 for the rate
limit). The codes used, and what ccxt makes of them:

=========================  =====  ==========================================
case                       code   ccxt
=========================  =====  ==========================================
insufficient (futures)     40762  InsufficientFunds
insufficient (spot)        43012  InsufficientFunds
order unknown (detail)     40109  OrderNotFound (spot detail: empty list)
order unknown (cancel)     40768  OrderNotFound (spot: 43001)
duplicate clientOid        40786  ExchangeError (unmapped)
clientOid malformed        40305  BadRequest
size step / price tick     40808  InvalidOrder / 41103 InvalidOrder
below minimum value        45110  InvalidOrder
reduce-only, nothing held  22002  ExchangeError (unmapped)
hedge close > position     40757  ExchangeError (unmapped)
position mode mismatch     40774  InvalidOrder
rate limit                 429    DDoSProtection (HTTP 429)
=========================  =====  ==========================================

Position modes: in one-way mode (``posMode`` one_way_mode) an order is a
plain buy/sell, ``reduceOnly: "YES"`` closes, and ``tradeSide`` is refused
(40774). In hedge mode every order needs ``tradeSide`` open/close and
``side`` names the *position*: close long is side=buy + tradeSide=close.
A clientOid is refused (40786) only while an earlier order with it is still
unfilled (Bitget documents clientOid idempotency as "only valid when orders
are unfilled").

``order_row``/``spot_order_row``/``position_row``/``fill_row`` build the
venue's objects from engine state, for the REST answers here and for a
private-stream format later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, unquote

from .engine import OPEN_STATUSES, Account, Engine, Execution, Order, Reject
from .markets import Market, fmt, step_decimals
from .wire import BookingEffects, WireRequest, WireResponse, json_response

__all__ = ["BITGET_MESSAGES", "BitgetVenue"]

BITGET_MESSAGES = {
    "00000": "success",
    "40001": "ACCESS_KEY cannot be empty",
    "40005": "Invalid ACCESS_TIMESTAMP",
    "40006": "Invalid ACCESS_KEY",
    "40008": "Request timestamp expired",
    "40009": "sign signature error",
    "40011": "ACCESS_PASSPHRASE cannot be empty",
    "40012": "apikey/password is incorrect",
    "40017": "Parameter verification failed",
    "40019": "Parameter cannot be empty",
    "40084": "You are in Classic Account mode, and the Unified Account API is not supported at this time",
    "40109": "The data of the order cannot be found, please confirm the order number",
    "40305": "Client_oid length is not greater than 50, and cannot be Martian characters",
    "40309": "The contract has been removed",
    "40404": "Request URL NOT FOUND",
    "40757": "Not enough position is available.",
    "40762": "The order amount exceeds the balance",
    "40768": "Order does not exist",
    "40774": "The order type for unilateral position must also be the unilateral position type.",
    "40786": "Duplicate clientOid",
    "40797": "Exceeded the maximum settable leverage",
    "40808": "Parameter verification exception size checkBDScale error",
    "40920": "Position or order exists, the position mode cannot be switched",
    "41103": "param price scale error error",
    "43001": "The order does not exist",
    "43012": "Insufficient balance",
    "45110": "less than the minimum amount 5 USDT",
    "45111": "less than the minimum order quantity",
    "22002": "No position to close",
    "429": "Too Many Requests",
}

# Engine rejection kind -> (futures code, spot code).
_REJECT_CODES = {
    "unknown_symbol": ("40309", "40034"),
    "invalid_param": ("40017", "40017"),
    "invalid_qty": ("40808", "40808"),
    "invalid_price": ("41103", "41103"),
    "qty_too_small": ("45111", "45111"),
    "qty_too_large": ("40017", "40017"),
    "min_notional": ("45110", "45110"),
    "insufficient": ("40762", "43012"),
    "reduce_only": ("22002", "22002"),
    "duplicate_client_id": ("40786", "40786"),
    "invalid_client_id": ("40305", "40305"),
    "not_found": ("40768", "43001"),
    "invalid_leverage": ("40797", "40797"),
    "rate_limited": ("429", "429"),
    "position_mode": ("40774", "40774"),
    "position_mode_locked": ("40920", "40920"),
    "post_only": ("40017", "40017"),
}

_HTTP_FOR_CODE = {"429": 429, "40404": 404}

_MIX_STATE = {
    "New": "live",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "canceled",
    "PartiallyFilledCanceled": "canceled",
    "Rejected": "canceled",
}
_SPOT_STATUS = {
    "New": "live",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "PartiallyFilledCanceled": "cancelled",
    "Rejected": "cancelled",
}
_FORCE = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "POST_ONLY": "PostOnly"}
_FORCE_OUT = {"GTC": "gtc", "IOC": "ioc", "FOK": "fok", "PostOnly": "post_only"}
PRODUCT_TYPE = "USDT-FUTURES"
# The other product types ccxt asks for when it loads swap markets: answered empty.
_OTHER_PRODUCT_TYPES = frozenset({"COIN-FUTURES", "USDC-FUTURES", "SUSDT-FUTURES", "SCOIN-FUTURES", "SUSDC-FUTURES"})
TIMESTAMP_WINDOW_MS = 30_000


def _d(value: object, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Reject("invalid_param", f"{name} invalid") from None
    if not out.is_finite():
        raise Reject("invalid_param", f"{name} invalid")
    return out


def _price_filter(tick: Decimal) -> tuple[int, int]:
    """Bitget states a tick as pricePlace decimals and the last digit's step
    (priceEndStep): 0.1 -> (1, 1), 0.05 -> (2, 5), 0.00001 -> (5, 1)."""
    places = step_decimals(tick)
    return places, int(tick.normalize().scaleb(places))


class BitgetVenue:
    """Routes, auth and response shapes of Bitget API v2 (classic account)."""

    name = "bitget"

    def __init__(
        self,
        engine: Engine,
        credentials_for: Callable[[str], tuple[str, str | None] | None],
        *,
        check_recv_window: bool = True,
    ) -> None:
        self.engine = engine
        self.credentials_for = credentials_for
        self.check_recv_window = check_recv_window
        # (method, path) -> (operation, private?, handler)
        self.routes: dict[tuple[str, str], tuple[str, bool, Callable]] = {
            ("GET", "/api/v2/public/time"): ("time", False, self._time),
            ("GET", "/api/v2/mix/market/contracts"): ("markets", False, self._contracts),
            ("GET", "/api/v2/spot/public/symbols"): ("markets", False, self._spot_symbols),
            ("GET", "/api/v2/margin/currencies"): ("markets", False, self._margin_currencies),
            ("GET", "/api/v2/mix/market/ticker"): ("tickers", False, self._mix_ticker),
            ("GET", "/api/v2/spot/market/tickers"): ("tickers", False, self._spot_tickers),
            ("GET", "/api/v3/account/settings"): ("account_info", True, self._uta_settings),
            # futures
            ("POST", "/api/v2/mix/order/place-order"): ("create_order", True, self._mix_place),
            ("GET", "/api/v2/mix/order/detail"): ("query_order", True, self._mix_detail),
            ("POST", "/api/v2/mix/order/cancel-order"): ("cancel_order", True, self._mix_cancel),
            ("GET", "/api/v2/mix/order/orders-pending"): ("query_order", True, self._mix_pending),
            ("GET", "/api/v2/mix/order/orders-history"): ("query_order", True, self._mix_history),
            ("GET", "/api/v2/mix/order/fills"): ("executions", True, self._mix_fills),
            ("GET", "/api/v2/mix/position/all-position"): ("positions", True, self._all_positions),
            ("GET", "/api/v2/mix/position/single-position"): ("positions", True, self._single_position),
            ("GET", "/api/v2/mix/account/accounts"): ("balance", True, self._mix_accounts),
            ("GET", "/api/v2/mix/account/account"): ("account_info", True, self._mix_account),
            ("POST", "/api/v2/mix/account/set-leverage"): ("set_leverage", True, self._set_leverage),
            ("POST", "/api/v2/mix/account/set-position-mode"): ("account_settings", True, self._set_position_mode),
            ("POST", "/api/v2/mix/account/set-margin-mode"): ("account_settings", True, self._set_margin_mode),
            # spot
            ("POST", "/api/v2/spot/trade/place-order"): ("create_order", True, self._spot_place),
            ("GET", "/api/v2/spot/trade/orderInfo"): ("query_order", True, self._spot_order_info),
            ("POST", "/api/v2/spot/trade/cancel-order"): ("cancel_order", True, self._spot_cancel),
            ("GET", "/api/v2/spot/trade/unfilled-orders"): ("query_order", True, self._spot_unfilled),
            ("GET", "/api/v2/spot/trade/history-orders"): ("query_order", True, self._spot_history),
            ("GET", "/api/v2/spot/trade/fills"): ("executions", True, self._spot_fills),
            ("GET", "/api/v2/spot/account/assets"): ("balance", True, self._spot_assets),
        }

    # ------------------------------------------------------------ plumbing
    def describe(self, req: WireRequest) -> None:
        route = self.routes.get((req.method, req.path))
        req.operation = route[0] if route else "other"
        req.account = req.header("access-key")
        try:
            if req.method == "GET":
                req.params = dict(parse_qsl(req.query, keep_blank_values=True))
            else:
                parsed = json.loads(req.body) if req.body.strip() else {}
                req.params = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            req.params = {}
        symbol = req.params.get("symbol")
        req.symbol = str(symbol).upper() if symbol else None
        cid = req.params.get("clientOid")
        req.client_order_id = str(cid) if cid else None

    def envelope(self, data: object, code: str = "00000", msg: str = "success") -> dict:
        return {"code": code, "msg": msg, "requestTime": self.engine.now_ms(), "data": data}

    def error(
        self, code: str, msg: str | None = None, *, status: int | None = None, outcome: str | None = None
    ) -> WireResponse:
        code = str(code)
        msg = msg or BITGET_MESSAGES.get(code, "error")
        return json_response(
            status or _HTTP_FOR_CODE.get(code, 400),
            self.envelope(None, code, msg),
            code=int(code) if code.isdigit() else None,
            outcome=outcome or f"rejected:{code}",
        )

    def ok(self, data: object, **kw) -> WireResponse:
        return json_response(200, self.envelope(data), **kw)

    def _reject(self, exc: Reject, spot: bool) -> WireResponse:
        futures_code, spot_code = _REJECT_CODES.get(exc.kind, ("40017", "40017"))
        code = spot_code if spot else futures_code
        msg = BITGET_MESSAGES.get(code)
        if exc.kind in ("invalid_param", "qty_too_large", "post_only") and exc.message:
            msg = f"Parameter verification failed: {exc.message}"
        elif exc.kind == "min_notional" and exc.message:
            msg = f"less than the minimum amount {exc.message.rsplit(' ', 1)[-1]} USDT"
        elif exc.kind == "unknown_symbol" and spot:
            msg = "invalid symbol"
        elif exc.kind == "position_mode" and exc.message:
            msg = f"{BITGET_MESSAGES['40774']} ({exc.message})"
        return self.error(code, msg)

    def not_found(self) -> WireResponse:
        return self.error("40404", status=404, outcome="not_found")

    def fault_error(self, code: int, msg: str | None, status: int | None) -> WireResponse:
        return self.error(str(code), msg, status=status, outcome=f"fault:ret_code:{code}")

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
            with self.engine.lock:
                return handler(req, acct, effects)
        except (ValueError, TypeError, KeyError):
            return self.error("40017", "Parameter verification failed: malformed parameter")
        except Reject as exc:
            return self._reject(exc, spot="/spot/" in req.path)

    def _authenticate(self, req: WireRequest) -> WireResponse | None:
        key = req.header("access-key") or ""
        if not key:
            return self.error("40001", outcome="auth:40001")
        creds = self.credentials_for(key)
        if creds is None:
            return self.error("40006", outcome="auth:40006")
        secret, passphrase = creds
        given_pass = req.header("access-passphrase") or ""
        if not given_pass:
            return self.error("40011", outcome="auth:40011")
        if passphrase is None or not hmac.compare_digest(given_pass, passphrase):
            return self.error("40012", outcome="auth:40012")
        ts_text = req.header("access-timestamp") or ""
        if not ts_text.isdigit():
            return self.error("40005", outcome="auth:40005")
        if self.check_recv_window and abs(self.engine.now_ms() - int(ts_text)) > TIMESTAMP_WINDOW_MS:
            return self.error("40008", outcome="auth:40008")
        given = req.header("access-sign") or ""
        # The query as sent; ccxt signs it unescaped, which is the same for
        # every parameter tvtrader sends, so both forms are accepted.
        candidates = [req.query, unquote(req.query)] if req.query else [""]
        for query in candidates:
            path = req.path + ("?" + query if query else "")
            payload = ts_text + req.method.upper() + path + (req.body if req.method == "POST" else "")
            expected = base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
            if hmac.compare_digest(expected, given):
                return None
        return self.error("40009", outcome="auth:40009")

    # -------------------------------------------------------------- public
    def _time(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        return self.ok({"serverTime": str(self.engine.now_ms())})

    def _contracts(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        product = str(req.params.get("productType", "")).upper()
        if product in _OTHER_PRODUCT_TYPES:
            return self.ok([])
        if product != PRODUCT_TYPE:
            return self.error("40017", "Parameter verification failed: productType")
        rows = []
        for m in list(self.engine.markets.values()):
            if req.params.get("symbol") and m.symbol != str(req.params["symbol"]).upper():
                continue
            rows.append(self.contract_row(m))
        return self.ok(rows)

    @staticmethod
    def contract_row(m: Market) -> dict:
        places, end_step = _price_filter(m.tick)
        return {
            "symbol": m.symbol,
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "buyLimitPriceRatio": "0.05",
            "sellLimitPriceRatio": "0.05",
            "feeRateUpRatio": "0.005",
            "makerFeeRate": "0.0002",
            "takerFeeRate": "0.0006",
            "openCostUpRatio": "0.01",
            "supportMarginCoins": [m.quote],
            "minTradeNum": fmt(m.min_qty),
            "priceEndStep": str(end_step),
            "volumePlace": str(step_decimals(m.qty_step)),
            "pricePlace": str(places),
            "sizeMultiplier": fmt(m.qty_step),
            "symbolType": "perpetual",
            "minTradeUSDT": fmt(m.min_notional),
            "maxSymbolOrderNum": "200",
            "maxProductOrderNum": "400",
            "maxPositionNum": "150",
            "symbolStatus": "normal",
            "offTime": "-1",
            "limitOpenTime": "-1",
            "deliveryTime": "",
            "deliveryStartTime": "",
            "deliveryPeriod": "",
            "launchTime": "",
            "fundInterval": "8",
            "minLever": "1",
            "maxLever": str(m.max_leverage),
            "posLimit": "0.05",
            "maintainTime": "",
            "maxMarketOrderQty": fmt(m.max_qty / 10),
            "maxOrderQty": fmt(m.max_qty),
        }

    def _spot_symbols(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        rows = []
        for m in list(self.engine.markets.values()):
            if not m.spot:
                continue
            if req.params.get("symbol") and m.symbol != str(req.params["symbol"]).upper():
                continue
            rows.append(self.spot_symbol_row(m))
        return self.ok(rows)

    @staticmethod
    def spot_symbol_row(m: Market) -> dict:
        return {
            "symbol": m.symbol,
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "minTradeAmount": "0",
            "maxTradeAmount": fmt(m.spot_max_qty),
            "takerFeeRate": "0.001",
            "makerFeeRate": "0.001",
            "pricePrecision": str(step_decimals(m.spot_tick)),
            "quantityPrecision": str(step_decimals(m.spot_base_precision)),
            "quotePrecision": "8",
            "status": "online",
            "minTradeUSDT": fmt(m.spot_min_amt),
            "buyLimitPriceRatio": "0.05",
            "sellLimitPriceRatio": "0.05",
            "areaSymbol": "no",
            "orderQuantity": "200",
            "openTime": str(m.launch_time_ms),
        }

    def _margin_currencies(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        # No spot margin pairs are emulated.
        return self.ok([])

    def _mix_ticker(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        m = self.engine.market(str(req.params.get("symbol", "")))
        return self.ok([self._ticker_row(m, m.tick)])

    def _spot_tickers(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        symbol = req.params.get("symbol")
        markets = [self.engine.market(str(symbol))] if symbol else [m for m in self.engine.markets.values() if m.spot]
        return self.ok([self._ticker_row(m, m.spot_tick) for m in markets])

    def _ticker_row(self, m: Market, tick: Decimal) -> dict:
        return {
            "symbol": m.symbol,
            "lastPr": fmt(m.price),
            "askPr": fmt(m.price + tick),
            "bidPr": fmt(m.price - tick),
            "bidSz": "1",
            "askSz": "1",
            "high24h": fmt(m.price),
            "low24h": fmt(m.price),
            "ts": str(self.engine.now_ms()),
            "change24h": "0",
            "baseVolume": "0",
            "quoteVolume": "0",
            "usdtVolume": "0",
            "openUtc": fmt(m.price),
            "changeUtc24h": "0",
            "indexPrice": fmt(m.price),
            "markPrice": fmt(m.price),
            "fundingRate": "0.0001",
            "holdingAmount": "0",
        }

    def _uta_settings(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        # ccxt probes this to tell a unified account from a classic one: the
        # emulated accounts are classic, which is what tvtrader's gateway uses.
        return self.error("40084")

    # ------------------------------------------------------- futures orders
    def _lot(self, m: Market) -> tuple[Decimal, Decimal, Decimal]:
        return m.qty_step, m.min_qty, m.max_qty

    def _mix_place(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("symbol", "productType", "marginMode", "marginCoin", "size", "side", "orderType"):
            if p.get(name) in (None, ""):
                return self.error("40019", f"Parameter {name} cannot be empty")
        if str(p["productType"]).upper() != PRODUCT_TYPE:
            return self.error("40017", "Parameter verification failed: productType")
        margin_mode = str(p["marginMode"]).lower()
        if margin_mode not in ("crossed", "isolated"):
            return self.error("40017", "Parameter verification failed: marginMode")
        side = str(p["side"]).lower()
        order_type = str(p["orderType"]).lower()
        if side not in ("buy", "sell") or order_type not in ("market", "limit"):
            return self.error("40017", "Parameter verification failed: side or orderType")
        if p.get("triggerPrice") or p.get("presetStopSurplusPrice") or p.get("presetStopLossPrice"):
            return self.error("40017", "Parameter verification failed: TP/SL orders are not emulated")
        market = self.engine.market(str(p["symbol"]))
        trade_side = str(p.get("tradeSide") or "").lower()
        reduce_only = str(p.get("reduceOnly") or "NO").upper() == "YES"
        qty = _d(p["size"], "size")
        position_side = ""
        engine_side = "Buy" if side == "buy" else "Sell"
        if acct.hedge_mode:
            if trade_side not in ("open", "close"):
                return self.error(
                    "40774", "The order type for hedge position must also be the hedge position type (tradeSide)."
                )
            # Hedge mode: "side" names the position; a close trades the other way.
            position_side = "long" if side == "buy" else "short"
            if trade_side == "close":
                reduce_only = True
                engine_side = "Sell" if side == "buy" else "Buy"
                held = acct.hedge_positions.get((market.symbol, position_side))
                size = abs(held.size) if held else Decimal(0)
                if size == 0:
                    return self.error("22002")
                if qty > size:
                    return self.error("40757")
            else:
                reduce_only = False
        elif trade_side:
            return self.error("40774")
        elif reduce_only:
            held = acct.positions.get(market.symbol)
            size = held.size if held else Decimal(0)
            if size == 0 or (size > 0) == (engine_side == "Buy"):
                return self.error("22002")
        try:
            self.engine.check_rate_limit(acct, req.path)
        except Reject:
            return self.error("429", status=429, outcome="rate_limited:429")
        force = _FORCE.get(str(p.get("force") or "GTC").upper(), "")
        if order_type == "limit" and not force:
            return self.error("40017", "Parameter verification failed: force")
        order = self.engine.place_order(
            acct,
            category="linear",
            symbol=market.symbol,
            side=engine_side,
            order_type="Market" if order_type == "market" else "Limit",
            qty=qty,
            price=_d(p["price"], "price") if order_type == "limit" and p.get("price") not in (None, "") else None,
            client_order_id=str(p.get("clientOid") or ""),
            reduce_only=reduce_only,
            time_in_force=force if order_type == "limit" else "",
            position_side=position_side,
            margin_mode="cross" if margin_mode == "crossed" else "isolated",
            lot=self._lot(market),
            partial_fraction=effects.partial_fraction,
            fill_after_lookups=effects.fill_after_lookups,
            invisible_ms=effects.invisible_ms,
            faults=effects.fault_names,
        )
        return self.ok(
            {"clientOid": order.client_order_id, "orderId": order.order_id}, order_id=order.order_id, booked=True
        )

    def _order_ref(self, p: dict) -> tuple[str | None, str | None]:
        order_id = p.get("orderId") or None
        cid = p.get("clientOid") or None
        if not (order_id or cid):
            raise Reject("invalid_param", "either orderId or clientOid is required")
        return (str(order_id) if order_id else None), (None if order_id else str(cid))

    def _mix_detail(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if not p.get("symbol") or not p.get("productType"):
            return self.error("40019", "Parameter symbol cannot be empty")
        order_id, cid = self._order_ref(p)
        order = self.engine.lookup_one(
            acct,
            category="linear",
            symbol=self.engine.market(str(p["symbol"])).symbol,
            order_id=order_id,
            client_order_id=cid,
        )
        if order is None:
            return self.error("40109")
        return self.ok(self.order_row(acct, order))

    def _mix_cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if not p.get("symbol") or not p.get("productType"):
            return self.error("40019", "Parameter symbol cannot be empty")
        order_id, cid = self._order_ref(p)
        order = self.engine.cancel(
            acct,
            category="linear",
            symbol=self.engine.market(str(p["symbol"])).symbol,
            order_id=order_id,
            client_order_id=cid,
        )
        return self.ok({"orderId": order.order_id, "clientOid": order.client_order_id}, order_id=order.order_id)

    def _mix_pending(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        cid = p.get("clientOid") or None
        orders = self.engine.query(
            acct,
            category="linear",
            symbol=symbol,
            client_order_id=cid,
            order_id=p.get("orderId") or None,
            statuses=OPEN_STATUSES,
        )
        orders = orders[: self._limit(p, 100, 100)]
        rows = [self.order_row(acct, o) for o in orders]
        return self.ok({"entrustedList": rows or None, "endId": rows[-1]["orderId"] if rows else None})

    def _mix_history(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        orders = self.engine.query(
            acct,
            category="linear",
            symbol=symbol,
            client_order_id=p.get("clientOid") or None,
            order_id=p.get("orderId") or None,
        )
        orders = [o for o in orders if not o.is_open][: self._limit(p, 100, 100)]
        rows = [self.order_row(acct, o) for o in orders]
        return self.ok({"entrustedList": rows or None, "endId": rows[-1]["orderId"] if rows else None})

    @staticmethod
    def _limit(p: dict, default: int, maximum: int) -> int:
        try:
            return max(1, min(maximum, int(p.get("limit") or default)))
        except ValueError:
            return default

    def order_row(self, acct: Account, o: Order) -> dict:
        """A futures order as ``/api/v2/mix/order/detail`` shows it."""
        if o.position_side:
            closing = o.reduce_only
            hold = o.position_side
            side = "buy" if hold == "long" else "sell"
            trade_side = "close" if closing else "open"
            pos_side, pos_mode = hold, "hedge_mode"
        else:
            side = o.side.lower()
            trade_side = f"{side}_single"
            pos_side, pos_mode = "net", "one_way_mode"
        return {
            "symbol": o.symbol,
            "size": fmt(o.qty),
            "orderId": o.order_id,
            "clientOid": o.client_order_id,
            "baseVolume": fmt(o.cum_qty),
            "priceAvg": fmt(o.avg_price) if o.cum_qty else "",
            "fee": fmt(-o.cum_fee) if o.cum_fee else "0",
            "price": fmt(o.price) if o.price is not None else "",
            "state": _MIX_STATE.get(o.status, "live"),
            "side": side,
            "force": _FORCE_OUT.get(o.time_in_force, "gtc"),
            "totalProfits": "0",
            "posSide": pos_side,
            "marginCoin": "USDT",
            "presetStopSurplusPrice": "",
            "presetStopLossPrice": "",
            "quoteVolume": fmt(o.cum_value),
            "orderType": o.order_type.lower(),
            "leverage": fmt(acct.leverage_for(o.symbol)),
            "marginMode": "isolated" if o.margin_mode == "isolated" else "crossed",
            "reduceOnly": "YES" if o.reduce_only else "NO",
            "enterPointSource": "API",
            "tradeSide": trade_side,
            "posMode": pos_mode,
            "orderSource": o.order_type.lower(),
            "cancelReason": "",
            "cTime": str(o.created_ms),
            "uTime": str(o.updated_ms),
        }

    def _mix_fills(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        execs = self.engine.executions(acct, category="linear", symbol=symbol, order_id=p.get("orderId") or None)
        execs = execs[: self._limit(p, 100, 100)]
        rows = [self.fill_row(acct, e) for e in execs]
        return self.ok({"fillList": rows or None, "endId": rows[-1]["tradeId"] if rows else None})

    def fill_row(self, acct: Account, e: Execution) -> dict:
        order = acct.orders.get(e.order_id)
        hedged = bool(order and order.position_side)
        return {
            "tradeId": e.exec_id,
            "symbol": e.symbol,
            "orderId": e.order_id,
            "price": fmt(e.price),
            "baseVolume": fmt(e.qty),
            "feeDetail": [
                {"deduction": "no", "feeCoin": e.fee_coin, "totalDeductionFee": "0", "totalFee": fmt(-e.fee)}
            ],
            "side": e.side.lower(),
            "quoteVolume": fmt(e.value),
            "profit": "0",
            "enterPointSource": "API",
            "tradeSide": ("close" if order.reduce_only else "open") if hedged else f"{e.side.lower()}_single",
            "posMode": "hedge_mode" if hedged else "one_way_mode",
            "tradeScope": "maker" if e.is_maker else "taker",
            "cTime": str(e.time_ms),
        }

    # ------------------------------------------------------------ positions
    def _all_positions(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        if str(req.params.get("productType", "")).upper() != PRODUCT_TYPE:
            return self.ok([])
        rows = []
        for m, side, pos in self._open_positions(acct):
            rows.append(self.position_row(acct, m, side, pos))
        return self.ok(rows)

    def _single_position(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        m = self.engine.market(str(req.params.get("symbol", "")))
        rows = [self.position_row(acct, mm, side, pos) for mm, side, pos in self._open_positions(acct) if mm is m]
        return self.ok(rows)

    def _open_positions(self, acct: Account):
        out = []
        for sym, pos in sorted(acct.positions.items()):
            if pos.size != 0:
                out.append((self.engine.markets[sym], "long" if pos.size > 0 else "short", pos))
        for (sym, side), pos in sorted(acct.hedge_positions.items()):
            if pos.size != 0:
                out.append((self.engine.markets[sym], side, pos))
        return out

    def position_row(self, acct: Account, m: Market, side: str, pos) -> dict:
        size = abs(pos.size)
        lev = acct.leverage_for(m.symbol)
        margin = size * pos.entry_price / lev
        upnl = pos.size * (m.price - pos.entry_price)
        if side == "long":
            liq = pos.entry_price * (1 - 1 / lev + Decimal("0.004"))
        else:
            liq = pos.entry_price * (1 + 1 / lev - Decimal("0.004"))
        mode = acct.margin_modes.get(m.symbol, "cross")
        return {
            "marginCoin": m.quote,
            "symbol": m.symbol,
            "holdSide": side,
            "openDelegateSize": "0",
            "marginSize": fmt(margin),
            "available": fmt(size),
            "locked": "0",
            "total": fmt(size),
            "leverage": fmt(lev),
            "achievedProfits": fmt(pos.realised_pnl),
            "openPriceAvg": fmt(pos.entry_price),
            "marginMode": "crossed" if mode == "cross" else "isolated",
            "posMode": "hedge_mode" if acct.hedge_mode else "one_way_mode",
            "unrealizedPL": fmt(upnl),
            "liquidationPrice": fmt(liq.quantize(m.tick)),
            "keepMarginRate": "0.004",
            "markPrice": fmt(m.price),
            "marginRatio": "0.01",
            "breakEvenPrice": fmt(pos.entry_price),
            "totalFee": "0",
            "deductedFee": "0",
            "cTime": str(pos.created_ms),
            "uTime": str(pos.updated_ms),
        }

    # ------------------------------------------------------------- account
    def _account_numbers(self, acct: Account) -> dict:
        wallet = acct.balances.get("USDT", Decimal(0))
        upnl = self.engine.total_unrealised(acct)
        available = self.engine.available(acct, "USDT")
        return {
            "marginCoin": "USDT",
            "locked": fmt(self.engine.order_im(acct)),
            "available": fmt(wallet),
            "crossedMaxAvailable": fmt(available),
            "isolatedMaxAvailable": fmt(available),
            "maxTransferOut": fmt(max(available, Decimal(0))),
            "accountEquity": fmt(wallet + upnl),
            "usdtEquity": fmt(wallet + upnl),
            "btcEquity": "0",
            "crossedRiskRate": "0",
            "unrealizedPL": fmt(upnl),
            "coupon": "0",
            "crossedUnrealizedPL": fmt(upnl),
            "isolatedUnrealizedPL": "0",
            "assetMode": acct.config.get("asset_mode", "single"),
        }

    def _mix_accounts(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        if str(req.params.get("productType", "")).upper() != PRODUCT_TYPE:
            return self.ok([])
        return self.ok([self._account_numbers(acct)])

    def _mix_account(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("symbol", "productType", "marginCoin"):
            if not p.get(name):
                return self.error("40019", f"Parameter {name} cannot be empty")
        m = self.engine.market(str(p["symbol"]))
        lev = acct.leverage_for(m.symbol)
        row = self._account_numbers(acct)
        mode = acct.margin_modes.get(m.symbol, "cross")
        row.update(
            {
                "crossedMarginLeverage": fmt(lev),
                "isolatedLongLever": fmt(lev),
                "isolatedShortLever": fmt(lev),
                "marginMode": "crossed" if mode == "cross" else "isolated",
                "posMode": "hedge_mode" if acct.hedge_mode else "one_way_mode",
            }
        )
        return self.ok(row)

    def _set_leverage(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("symbol", "productType", "marginCoin", "leverage"):
            if p.get(name) in (None, ""):
                return self.error("40019", f"Parameter {name} cannot be empty")
        lev = _d(p["leverage"], "leverage")
        if lev != lev.to_integral_value():
            return self.error("40017", "Parameter verification failed: leverage")
        m = self.engine.market(str(p["symbol"]))
        if lev < 1 or lev > m.max_leverage:
            return self.error("40797", f"{BITGET_MESSAGES['40797']}: {m.max_leverage}")
        # Bitget answers the same whether or not the value changed.
        self.engine.set_leverage(acct, m.symbol, lev)
        mode = acct.margin_modes.get(m.symbol, "cross")
        return self.ok(
            {
                "symbol": m.symbol,
                "marginCoin": m.quote,
                "longLeverage": fmt(lev),
                "shortLeverage": fmt(lev),
                "crossMarginLeverage": fmt(lev),
                "marginMode": "crossed" if mode == "cross" else "isolated",
            }
        )

    def _set_position_mode(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        mode = str(req.params.get("posMode", ""))
        if mode not in ("one_way_mode", "hedge_mode"):
            return self.error("40017", "Parameter verification failed: posMode")
        self.engine.set_position_mode(acct, mode == "hedge_mode")
        return self.ok({"posMode": mode})

    def _set_margin_mode(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        mode = str(p.get("marginMode", "")).lower()
        if mode not in ("crossed", "isolated") or not p.get("symbol"):
            return self.error("40017", "Parameter verification failed: marginMode")
        m = self.engine.market(str(p["symbol"]))
        self.engine.set_margin_mode(acct, m.symbol, "cross" if mode == "crossed" else "isolated")
        lev = fmt(acct.leverage_for(m.symbol))
        return self.ok(
            {
                "symbol": m.symbol,
                "marginCoin": m.quote,
                "longLeverage": lev,
                "shortLeverage": lev,
                "marginMode": mode,
            }
        )

    # ----------------------------------------------------------------- spot
    def _spot_lot(self, m: Market) -> tuple[Decimal, Decimal, Decimal]:
        # Bitget spot states no minimum quantity (minTradeAmount "0"), only a
        # minimum value (minTradeUSDT).
        return m.spot_base_precision, m.spot_base_precision, m.spot_max_qty

    def _spot_place(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("symbol", "side", "orderType", "size"):
            if p.get(name) in (None, ""):
                return self.error("40019", f"Parameter {name} cannot be empty")
        side = str(p["side"]).lower()
        order_type = str(p["orderType"]).lower()
        if side not in ("buy", "sell") or order_type not in ("market", "limit"):
            return self.error("40017", "Parameter verification failed: side or orderType")
        market = self.engine.market(str(p["symbol"]))
        if not market.spot:
            return self.error("40034", "invalid symbol")
        try:
            self.engine.check_rate_limit(acct, req.path)
        except Reject:
            return self.error("429", status=429, outcome="rate_limited:429")
        force = _FORCE.get(str(p.get("force") or "GTC").upper(), "")
        if order_type == "limit" and not force:
            return self.error("40017", "Parameter verification failed: force")
        # A market buy's size is the quote amount to spend; everything else is base.
        quote_sized = order_type == "market" and side == "buy"
        order = self.engine.place_order(
            acct,
            category="spot",
            symbol=market.symbol,
            side="Buy" if side == "buy" else "Sell",
            order_type="Market" if order_type == "market" else "Limit",
            qty=_d(p["size"], "size"),
            price=_d(p["price"], "price") if order_type == "limit" and p.get("price") not in (None, "") else None,
            client_order_id=str(p.get("clientOid") or ""),
            time_in_force=force if order_type == "limit" else "",
            market_unit="quoteCoin" if quote_sized else "baseCoin",
            lot=self._spot_lot(market),
            partial_fraction=effects.partial_fraction,
            fill_after_lookups=effects.fill_after_lookups,
            invisible_ms=effects.invisible_ms,
            faults=effects.fault_names,
        )
        return self.ok(
            {"orderId": order.order_id, "clientOid": order.client_order_id}, order_id=order.order_id, booked=True
        )

    def _spot_order_info(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        order_id, cid = self._order_ref(req.params)
        order = self.engine.lookup_one(acct, category="spot", symbol=None, order_id=order_id, client_order_id=cid)
        # Bitget spot answers an unknown order with an empty list.
        return self.ok([self.spot_order_row(order)] if order is not None else [])

    def _spot_cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        if not p.get("symbol"):
            return self.error("40019", "Parameter symbol cannot be empty")
        order_id, cid = self._order_ref(p)
        order = self.engine.cancel(
            acct,
            category="spot",
            symbol=self.engine.market(str(p["symbol"])).symbol,
            order_id=order_id,
            client_order_id=cid,
        )
        return self.ok({"orderId": order.order_id, "clientOid": order.client_order_id}, order_id=order.order_id)

    def _spot_unfilled(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        orders = self.engine.query(acct, category="spot", symbol=symbol, statuses=OPEN_STATUSES)
        return self.ok([self.spot_order_row(o) for o in orders[: self._limit(p, 100, 100)]])

    def _spot_history(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        orders = [o for o in self.engine.query(acct, category="spot", symbol=symbol) if not o.is_open]
        return self.ok([self.spot_order_row(o) for o in orders[: self._limit(p, 100, 100)]])

    def spot_order_row(self, o: Order) -> dict:
        """A spot order as ``/api/v2/spot/trade/orderInfo`` shows it."""
        market = self.engine.markets[o.symbol]
        fee_coin = o.fee_coin or (market.base if o.side == "Buy" else market.quote)
        fee_detail = {
            fee_coin: {
                "deduction": False,
                "feeCoinCode": fee_coin,
                "totalDeductionFee": 0,
                "totalFee": float(-o.cum_fee),
            },
            "newFees": {
                "c": 0,
                "d": 0,
                "deduction": False,
                "r": float(-o.cum_fee),
                "t": float(-o.cum_fee),
                "totalDeductionFee": 0,
            },
        }
        return {
            "userId": "100000001",
            "symbol": o.symbol,
            "orderId": o.order_id,
            "clientOid": o.client_order_id,
            "price": fmt(o.price) if o.price is not None else "0",
            # A market buy is sized in quote: "size" is what it may spend.
            "size": fmt(o.quote_qty if o.quote_qty is not None else o.qty),
            "orderType": o.order_type.lower(),
            "side": o.side.lower(),
            "status": _SPOT_STATUS.get(o.status, "live"),
            "priceAvg": fmt(o.avg_price) if o.cum_qty else "0",
            "baseVolume": fmt(o.cum_qty),
            "quoteVolume": fmt(o.cum_value),
            "enterPointSource": "API",
            "feeDetail": json.dumps(fee_detail) if o.cum_fee else "",
            "orderSource": o.order_type.lower(),
            "cancelReason": "",
            "cTime": str(o.created_ms),
            "uTime": str(o.updated_ms),
        }

    def _spot_fills(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        symbol = self.engine.market(str(p["symbol"])).symbol if p.get("symbol") else None
        execs = self.engine.executions(acct, category="spot", symbol=symbol, order_id=p.get("orderId") or None)
        rows = [
            {
                "userId": "100000001",
                "symbol": e.symbol,
                "orderId": e.order_id,
                "tradeId": e.exec_id,
                "orderType": e.order_type.lower(),
                "side": e.side.lower(),
                "priceAvg": fmt(e.price),
                "size": fmt(e.qty),
                "amount": fmt(e.value),
                "feeDetail": {
                    "deduction": "no",
                    "feeCoin": e.fee_coin,
                    "totalDeductionFee": "0",
                    "totalFee": fmt(-e.fee),
                },
                "tradeScope": "maker" if e.is_maker else "taker",
                "cTime": str(e.time_ms),
                "uTime": str(e.time_ms),
            }
            for e in execs[: self._limit(p, 100, 100)]
        ]
        return self.ok(rows)

    def _spot_assets(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        locked = self.engine.spot_locked(acct)
        wanted = req.params.get("coin")
        rows = []
        for coin, wallet in sorted(acct.balances.items()):
            if wanted and coin != str(wanted).upper():
                continue
            if wallet == 0 and coin != "USDT":
                continue
            held = locked.get(coin, Decimal(0))
            rows.append(
                {
                    "coin": coin,
                    "available": fmt(wallet - held),
                    "frozen": fmt(held),
                    "locked": "0",
                    "limitAvailable": "0",
                    "uTime": str(int(time.time() * 1000)),
                }
            )
        return self.ok(rows)
