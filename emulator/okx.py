"""OKX (API v5) REST surface of the emulator: USDT-margined perpetual swaps
(``BTC-USDT-SWAP``) and spot (``BTC-USDT``), the paths ccxt 4.5 uses.

Private requests carry ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``,
``OK-ACCESS-TIMESTAMP`` (ISO 8601, ms, UTC) and ``OK-ACCESS-SIGN`` =
base64(HMAC_SHA256(secret, timestamp + METHOD + path [+ "?" + query] + body)).
A timestamp more than 30 s away from the server's clock is refused (50102),
as are an unknown key (50111), a wrong passphrase (50105) and a bad signature
(50113), all with HTTP 401.

Every answer is ``{"code": "0", "msg": "", "data": [...]}``. Order operations
that fail answer HTTP 200 with ``code "1"`` and the reason per order in
``data[].sCode``/``sMsg``; other errors put the code at the top. The codes
used, and what ccxt makes of them:

=========================  =====  ==========================================
case                       code   ccxt
=========================  =====  ==========================================
insufficient balance       51008  InsufficientFunds
order unknown (query)      51603  OrderNotFound
order unknown (cancel)     51400  OrderNotFound (51401 cancelled, 51402 filled)
duplicate clOrdId          51016  InvalidOrder
clOrdId / param malformed  51000  BadRequest
size not a lot multiple    51121  InvalidOrder
below the minimum size     51020  InvalidOrder
close more than held       51112  InvalidOrder
reduce-only, nothing held  51169  ExchangeError (unmapped)
reduce-only, same side     51170  ExchangeError (unmapped)
account mode lacks swaps   51010  AccountNotEnabled
settings locked            59000  ExchangeError
rate limit                 50011  RateLimitExceeded (HTTP 429)
=========================  =====  ==========================================

Swaps count in contracts: ``sz`` x ``ctVal`` base coins, in steps of
``lotSz``; the engine books base coins. Position modes: ``net_mode`` (one
signed position; ``reduceOnly`` closes) or ``long_short_mode`` (every swap
order names ``posSide`` long/short; a sell on the long side closes it).
``tdMode`` is cross/isolated per order (cash for spot). A clOrdId is refused
(51016) only while an earlier order with it is still pending: OKX looks
orders up by clOrdId as "the latest" of possibly several.

``order_row``/``position_row``/``fill_row`` build the venue's objects from
engine state, for the REST answers here and for a private-stream format later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from .engine import OPEN_STATUSES, Account, Engine, Execution, Order, Reject
from .markets import Market, fmt
from .wire import BookingEffects, WireRequest, WireResponse, json_response

__all__ = ["OKX_MESSAGES", "OkxVenue"]

OKX_MESSAGES = {
    "0": "",
    "1": "All operations failed",
    "50011": "Too Many Requests",
    "50014": "Parameter {0} can not be empty.",
    "50102": "Timestamp request expired.",
    "50103": 'Request header "OK-ACCESS-KEY" can not be empty.',
    "50104": 'Request header "OK-ACCESS-PASSPHRASE" can not be empty.',
    "50105": 'Request header "OK-ACCESS-PASSPHRASE" incorrect.',
    "50106": 'Request header "OK-ACCESS-SIGN" can not be empty.',
    "50107": 'Request header "OK-ACCESS-TIMESTAMP" can not be empty.',
    "50111": "Invalid OK-ACCESS-KEY.",
    "50112": "Invalid OK-ACCESS-TIMESTAMP.",
    "50113": "Invalid Sign.",
    "51000": "Parameter {0} error",
    "51001": "Instrument ID doesn't exist.",
    "51004": "Order quantity exceeds the limit.",
    "51008": "Order failed. Insufficient USDT margin in account",
    "51010": "You can't complete this request under your current account mode.",
    "51016": "Duplicated clOrdId",
    "51020": "Your order should meet or exceed the minimum order amount.",
    "51112": "Close order size exceeds your available size.",
    "51121": "Order quantity must be a multiple of the lot size.",
    "51169": "Order failed because you don't have any positions in this direction for this contract to reduce or close.",
    "51170": "Failed to place order. A reduce-only order can't be the same trade direction as your existing positions.",
    "51400": "Order cancellation failed as the order has been filled, canceled or does not exist.",
    "51401": "Order has been canceled.",
    "51402": "Order has been completed.",
    "51603": "Order does not exist",
    "59000": "Settings failed. Close any open positions or orders before modifying settings.",
}

# Engine rejection kind -> sCode.
_REJECT_CODES = {
    "unknown_symbol": "51001",
    "invalid_param": "51000",
    "invalid_qty": "51121",
    "invalid_price": "51000",
    "qty_too_small": "51020",
    "qty_too_large": "51004",
    "min_notional": "51020",
    "insufficient": "51008",
    "reduce_only": "51169",
    "duplicate_client_id": "51016",
    "invalid_client_id": "51000",
    "not_found": "51400",
    "invalid_leverage": "51000",
    "rate_limited": "50011",
    "position_mode": "51000",
    "position_mode_locked": "59000",
    "post_only": "51000",
}
_TOP_LEVEL_HTTP = {
    "50011": 429,
    "50102": 401,
    "50103": 401,
    "50104": 401,
    "50105": 401,
    "50106": 401,
    "50107": 401,
    "50111": 401,
    "50112": 401,
    "50113": 401,
}

_STATE = {
    "New": "live",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "canceled",
    "PartiallyFilledCanceled": "canceled",
    "Rejected": "canceled",
}
_ORD_TYPE_TIF = {"limit": "GTC", "post_only": "PostOnly", "fok": "FOK", "ioc": "IOC"}
_TIF_ORD_TYPE = {"GTC": "limit", "PostOnly": "post_only", "FOK": "fok", "IOC": "ioc"}
TIMESTAMP_WINDOW_MS = 30_000


def _d(value: object, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Reject("invalid_param", name) from None
    if not out.is_finite():
        raise Reject("invalid_param", name)
    return out


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1")


def _iso_ms(text: str) -> int | None:
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


class _OrderError(Exception):
    """A refused order, reported per order (sCode) inside a code-"1" answer."""

    def __init__(self, code: str, msg: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.msg = msg or OKX_MESSAGES.get(code, "")


class OkxVenue:
    """Routes, auth and response shapes of OKX API v5."""

    name = "okx"

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
        self.routes: dict[tuple[str, str], tuple[str, bool, Callable]] = {
            ("GET", "/api/v5/public/time"): ("time", False, self._time),
            ("GET", "/api/v5/public/instruments"): ("markets", False, self._instruments),
            ("GET", "/api/v5/market/ticker"): ("tickers", False, self._ticker),
            ("POST", "/api/v5/trade/order"): ("create_order", True, self._place_one),
            ("POST", "/api/v5/trade/batch-orders"): ("create_order", True, self._place_batch),
            ("GET", "/api/v5/trade/order"): ("query_order", True, self._query),
            ("POST", "/api/v5/trade/cancel-order"): ("cancel_order", True, self._cancel),
            ("GET", "/api/v5/trade/orders-pending"): ("query_order", True, self._pending),
            ("GET", "/api/v5/trade/orders-history"): ("query_order", True, self._history),
            ("GET", "/api/v5/trade/fills"): ("executions", True, self._fills),
            ("GET", "/api/v5/account/positions"): ("positions", True, self._positions),
            ("GET", "/api/v5/account/balance"): ("balance", True, self._balance),
            ("GET", "/api/v5/account/config"): ("account_info", True, self._config),
            ("POST", "/api/v5/account/set-leverage"): ("set_leverage", True, self._set_leverage),
            ("POST", "/api/v5/account/set-position-mode"): ("account_settings", True, self._set_position_mode),
        }

    # ------------------------------------------------------------ plumbing
    def describe(self, req: WireRequest) -> None:
        route = self.routes.get((req.method, req.path))
        req.operation = route[0] if route else "other"
        req.account = req.header("ok-access-key")
        first: dict = {}
        try:
            if req.method == "GET":
                req.params = dict(parse_qsl(req.query, keep_blank_values=True))
                first = req.params
            else:
                parsed = json.loads(req.body) if req.body.strip() else {}
                if isinstance(parsed, list):
                    # batch-orders: a list of orders; the log shows the first.
                    first = parsed[0] if parsed and isinstance(parsed[0], dict) else {}
                    req.params = {"orders": parsed, **first}
                else:
                    req.params = parsed if isinstance(parsed, dict) else {}
                    first = req.params
        except ValueError:
            req.params = {}
        inst = first.get("instId")
        if inst:
            try:
                req.symbol = self.engine.market(str(inst).split(",")[0]).symbol
            except Reject:
                req.symbol = str(inst)
        cid = first.get("clOrdId")
        req.client_order_id = str(cid) if cid else None

    @staticmethod
    def envelope(data: list, code: str = "0", msg: str = "") -> dict:
        return {"code": code, "msg": msg, "data": data}

    def ok(self, data: list, **kw) -> WireResponse:
        return json_response(200, self.envelope(data), **kw)

    def error(
        self, code: str, msg: str | None = None, *, status: int | None = None, outcome: str | None = None
    ) -> WireResponse:
        code = str(code)
        return json_response(
            status or _TOP_LEVEL_HTTP.get(code, 200),
            self.envelope([], code, msg or OKX_MESSAGES.get(code, "")),
            code=int(code) if code.isdigit() else None,
            outcome=outcome or f"rejected:{code}",
        )

    def order_error(self, item: dict, exc: _OrderError) -> WireResponse:
        """A refused order operation: code "1", the reason in the item."""
        now = str(self.engine.now_ms())
        row = {
            "clOrdId": str(item.get("clOrdId") or ""),
            "ordId": str(item.get("ordId") or ""),
            "tag": str(item.get("tag") or ""),
            "ts": now,
            "sCode": exc.code,
            "sMsg": exc.msg,
        }
        body = {**self.envelope([row], "1", OKX_MESSAGES["1"]), "inTime": now + "000", "outTime": now + "000"}
        return json_response(200, body, code=int(exc.code), outcome=f"rejected:{exc.code}")

    def not_found(self) -> WireResponse:
        return json_response(404, {"msg": "Not Found", "code": "404"}, code=404, outcome="not_found")

    def fault_error(self, code: int, msg: str | None, status: int | None) -> WireResponse:
        text = str(code)
        if text.startswith("51") and status is None:
            # Per-order codes come back inside a code-"1" answer, as OKX does.
            resp = self.order_error({}, _OrderError(text, msg))
            resp.outcome = f"fault:ret_code:{code}"
            return resp
        return self.error(text, msg, status=status, outcome=f"fault:ret_code:{code}")

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
        except _OrderError as exc:
            return self.order_error(req.params, exc)
        except (ValueError, TypeError, KeyError):
            return self.error("51000", "Parameter error: malformed parameter")
        except Reject as exc:
            return self.error(_REJECT_CODES.get(exc.kind, "51000"), self._reject_msg(exc))

    @staticmethod
    def _reject_msg(exc: Reject) -> str:
        code = _REJECT_CODES.get(exc.kind, "51000")
        if code == "51000":
            return f"Parameter error: {exc.message or exc.kind}"
        return OKX_MESSAGES.get(code, exc.message)

    def _authenticate(self, req: WireRequest) -> WireResponse | None:
        key = req.header("ok-access-key") or ""
        if not key:
            return self.error("50103", outcome="auth:50103")
        creds = self.credentials_for(key)
        if creds is None:
            return self.error("50111", outcome="auth:50111")
        secret, passphrase = creds
        given_pass = req.header("ok-access-passphrase") or ""
        if not given_pass:
            return self.error("50104", outcome="auth:50104")
        if passphrase is None or not hmac.compare_digest(given_pass, passphrase):
            return self.error("50105", outcome="auth:50105")
        ts_text = req.header("ok-access-timestamp") or ""
        if not ts_text:
            return self.error("50107", outcome="auth:50107")
        ts = _iso_ms(ts_text)
        if ts is None:
            return self.error("50112", outcome="auth:50112")
        if self.check_recv_window and abs(self.engine.now_ms() - ts) > TIMESTAMP_WINDOW_MS:
            return self.error("50102", outcome="auth:50102")
        given = req.header("ok-access-sign") or ""
        if not given:
            return self.error("50106", outcome="auth:50106")
        path = req.path + ("?" + req.query if req.query else "")
        payload = ts_text + req.method.upper() + path + (req.body if req.method != "GET" else "")
        expected = base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, given):
            return self.error("50113", outcome="auth:50113")
        return None

    # ----------------------------------------------------------- instruments
    def _inst(self, inst_id: object) -> tuple[Market, str]:
        """'BTC-USDT-SWAP' -> (market, "linear"); 'BTC-USDT' -> (market, "spot")."""
        text = str(inst_id or "").upper()
        if not text:
            raise _OrderError("50014", "Parameter instId can not be empty.")
        category = "linear" if text.endswith("-SWAP") else "spot"
        try:
            market = self.engine.market(text)
        except Reject:
            raise _OrderError("51001") from None
        if category == "spot" and not market.spot:
            raise _OrderError("51001")
        return market, category

    def inst_id(self, market: Market, category: str) -> str:
        return market.okx_swap_id if category == "linear" else market.okx_spot_id

    def _time(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        return self.ok([{"ts": str(self.engine.now_ms())}])

    def _instruments(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        inst_type = str(req.params.get("instType", "")).upper()
        if inst_type not in ("SPOT", "SWAP", "FUTURES", "OPTION", "MARGIN"):
            return self.error("51000", "Parameter instType error")
        rows = []
        wanted = req.params.get("instId")
        for m in list(self.engine.markets.values()):
            if inst_type == "SWAP":
                row = self.swap_instrument(m)
            elif inst_type == "SPOT" and m.spot:
                row = self.spot_instrument(m)
            else:
                continue
            if wanted and row["instId"] != wanted:
                continue
            rows.append(row)
        return self.ok(rows)

    @staticmethod
    def swap_instrument(m: Market) -> dict:
        return {
            "alias": "",
            "baseCcy": "",
            "category": "1",
            "ctMult": "1",
            "ctType": "linear",
            "ctVal": fmt(m.okx_ct_val),
            "ctValCcy": m.base,
            "expTime": "",
            "instFamily": f"{m.base}-{m.quote}",
            "instId": m.okx_swap_id,
            "instType": "SWAP",
            "lever": str(m.max_leverage),
            "listTime": str(m.launch_time_ms),
            "lotSz": fmt(m.okx_lot_sz),
            "maxIcebergSz": fmt(m.max_qty / m.okx_ct_val),
            "maxLmtAmt": "20000000",
            "maxLmtSz": fmt(m.max_qty / m.okx_ct_val),
            "maxMktAmt": "",
            "maxMktSz": fmt(m.max_qty / m.okx_ct_val / 10),
            "maxStopSz": fmt(m.max_qty / m.okx_ct_val / 10),
            "maxTriggerSz": fmt(m.max_qty / m.okx_ct_val),
            "maxTwapSz": fmt(m.max_qty / m.okx_ct_val),
            "minSz": fmt(m.okx_min_sz),
            "optType": "",
            "quoteCcy": "",
            "ruleType": "normal",
            "settleCcy": m.quote,
            "state": "live",
            "stk": "",
            "tickSz": fmt(m.tick),
            "uly": f"{m.base}-{m.quote}",
        }

    @staticmethod
    def spot_instrument(m: Market) -> dict:
        return {
            "alias": "",
            "baseCcy": m.base,
            "category": "1",
            "ctMult": "",
            "ctType": "",
            "ctVal": "",
            "ctValCcy": "",
            "expTime": "",
            "instFamily": "",
            "instId": m.okx_spot_id,
            "instType": "SPOT",
            "lever": "",
            "listTime": str(m.launch_time_ms),
            "lotSz": fmt(m.spot_base_precision),
            "maxIcebergSz": fmt(m.spot_max_qty),
            "maxLmtAmt": fmt(m.spot_max_amt),
            "maxLmtSz": fmt(m.spot_max_qty),
            "maxMktAmt": "1000000",
            "maxMktSz": "1000000",
            "maxStopSz": "1000000",
            "maxTriggerSz": fmt(m.spot_max_qty),
            "maxTwapSz": fmt(m.spot_max_qty),
            "minSz": fmt(m.spot_min_qty),
            "optType": "",
            "quoteCcy": m.quote,
            "ruleType": "normal",
            "settleCcy": "",
            "state": "live",
            "stk": "",
            "tickSz": fmt(m.spot_tick),
            "uly": "",
        }

    def _ticker(self, req: WireRequest, acct: None, effects: BookingEffects) -> WireResponse:
        market, category = self._inst(req.params.get("instId"))
        tick = market.tick if category == "linear" else market.spot_tick
        now = str(self.engine.now_ms())
        price = fmt(market.price)
        return self.ok(
            [
                {
                    "instType": "SWAP" if category == "linear" else "SPOT",
                    "instId": self.inst_id(market, category),
                    "last": price,
                    "lastSz": "1",
                    "askPx": fmt(market.price + tick),
                    "askSz": "1",
                    "bidPx": fmt(market.price - tick),
                    "bidSz": "1",
                    "open24h": price,
                    "high24h": price,
                    "low24h": price,
                    "volCcy24h": "0",
                    "vol24h": "0",
                    "sodUtc0": price,
                    "sodUtc8": price,
                    "ts": now,
                }
            ]
        )

    # -------------------------------------------------------------- orders
    def _place_one(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        return self._place_items(req, acct, effects, [req.params])

    def _place_batch(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        items = req.params.get("orders")
        if not isinstance(items, list) or not items:
            return self.error("50014", "Parameter orders can not be empty.")
        if len(items) > 20:
            return self.error("51000", "Parameter orders error")
        return self._place_items(req, acct, effects, items)

    def _place_items(self, req: WireRequest, acct: Account, effects: BookingEffects, items: list) -> WireResponse:
        rows, booked = [], None
        for item in items:
            item = item if isinstance(item, dict) else {}
            try:
                order = self._place(req, acct, effects, item)
            except _OrderError as exc:
                rows.append(self._item_row(item, "", exc.code, exc.msg))
                continue
            except Reject as exc:
                code = _REJECT_CODES.get(exc.kind, "51000")
                if code == "50011":
                    return self.error("50011", outcome="rate_limited:50011")
                rows.append(self._item_row(item, "", code, self._reject_msg(exc)))
                continue
            booked = booked or order
            rows.append(self._item_row(item, order.order_id, "0", "Order placed"))
        failed = sum(1 for r in rows if r["sCode"] != "0")
        now = str(self.engine.now_ms())
        if failed == 0:
            code, msg = "0", ""
        elif failed == len(rows):
            code, msg = "1", OKX_MESSAGES["1"]
        else:
            code, msg = "2", "Bulk operation partially succeeded"
        body = {**self.envelope(rows, code, msg), "inTime": now + "000", "outTime": now + "000"}
        return json_response(
            200,
            body,
            code=int(code) if failed == 0 else int(next(r["sCode"] for r in rows if r["sCode"] != "0")),
            outcome="ok" if failed == 0 else f"rejected:{rows[0]['sCode']}",
            order_id=booked.order_id if booked else None,
            booked=booked is not None,
        )

    def _item_row(self, item: dict, order_id: str, code: str, msg: str) -> dict:
        return {
            "clOrdId": str(item.get("clOrdId") or ""),
            "ordId": order_id,
            "tag": str(item.get("tag") or ""),
            "ts": str(self.engine.now_ms()),
            "sCode": code,
            "sMsg": msg,
        }

    def _place(self, req: WireRequest, acct: Account, effects: BookingEffects, p: dict) -> Order:
        for name in ("instId", "tdMode", "side", "ordType", "sz"):
            if p.get(name) in (None, ""):
                raise _OrderError("50014", f"Parameter {name} can not be empty.")
        market, category = self._inst(p["instId"])
        side = str(p["side"]).lower()
        ord_type = str(p["ordType"]).lower()
        td_mode = str(p["tdMode"]).lower()
        if side not in ("buy", "sell"):
            raise _OrderError("51000", "Parameter side error")
        if ord_type not in ("market", "limit", "post_only", "fok", "ioc", "optimal_limit_ioc"):
            raise _OrderError("51000", "Parameter ordType error")
        cid = str(p.get("clOrdId") or "")
        lev = acct.config.get("acct_lv", "2")
        if category == "linear":
            if lev == "1":
                # Spot mode (acctLv 1) cannot trade swaps.
                raise _OrderError("51010")
            if td_mode not in ("cross", "isolated"):
                raise _OrderError("51000", "Parameter tdMode error")
        elif td_mode != "cash":
            raise _OrderError("51000", "Parameter tdMode error (spot margin is not emulated)")
        engine_side = "Buy" if side == "buy" else "Sell"
        position_side, reduce_only = "", False
        sz = _d(p["sz"], "sz")
        if category == "linear":
            pos_side = str(p.get("posSide") or "").lower()
            if acct.hedge_mode:
                if pos_side not in ("long", "short"):
                    raise _OrderError("51000", "Parameter posSide error")
                position_side = pos_side
                reduce_only = (side == "sell") == (pos_side == "long")
                if reduce_only:
                    held = acct.hedge_positions.get((market.symbol, pos_side))
                    size = abs(held.size) if held else Decimal(0)
                    if size == 0:
                        raise _OrderError("51169")
                    if sz * market.okx_ct_val > size:
                        raise _OrderError("51112")
            else:
                if pos_side not in ("", "net"):
                    raise _OrderError("51000", "Parameter posSide error")
                reduce_only = _truthy(p.get("reduceOnly", False))
                if reduce_only:
                    held = acct.positions.get(market.symbol)
                    size = held.size if held else Decimal(0)
                    if size == 0:
                        raise _OrderError("51169")
                    if (size > 0) == (engine_side == "Buy"):
                        raise _OrderError("51170")
            qty = sz * market.okx_ct_val
            step = market.okx_lot_sz * market.okx_ct_val
            lot = (step, market.okx_min_sz * market.okx_ct_val, market.max_qty)
            market_unit = ""
        else:
            tgt = str(p.get("tgtCcy") or "quote_ccy")
            quote_sized = ord_type == "market" and side == "buy" and tgt == "quote_ccy"
            qty = sz
            lot = (market.spot_base_precision, market.spot_min_qty, market.spot_max_qty)
            market_unit = "quoteCoin" if quote_sized else "baseCoin"
        price = None
        if ord_type != "market" and ord_type != "optimal_limit_ioc":
            if p.get("px") in (None, ""):
                raise _OrderError("51000", "Parameter px error")
            price = _d(p["px"], "px")
        self.engine.check_rate_limit(acct, req.path)
        return self.engine.place_order(
            acct,
            category=category,
            symbol=market.symbol,
            side=engine_side,
            order_type="Limit" if price is not None else "Market",
            qty=qty,
            price=price,
            client_order_id=cid,
            reduce_only=reduce_only,
            time_in_force=_ORD_TYPE_TIF.get(ord_type, ""),
            market_unit=market_unit,
            position_side=position_side,
            margin_mode=td_mode if category == "linear" else "",
            lot=lot,
            min_notional=Decimal(0) if category == "linear" else Decimal("0.1"),
            partial_fraction=effects.partial_fraction,
            fill_after_lookups=effects.fill_after_lookups,
            invisible_ms=effects.invisible_ms,
            faults=effects.fault_names,
        )

    def _order_ref(self, p: dict) -> tuple[str | None, str | None]:
        order_id = p.get("ordId") or None
        cid = p.get("clOrdId") or None
        if not (order_id or cid):
            raise _OrderError("51000", "Parameter ordId error")
        return (str(order_id) if order_id else None), (None if order_id else str(cid))

    def _query(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        market, category = self._inst(p.get("instId"))
        order_id, cid = self._order_ref(p)
        order = self.engine.lookup_one(
            acct, category=category, symbol=market.symbol, order_id=order_id, client_order_id=cid
        )
        if order is None:
            return self.error("51603")
        return self.ok([self.order_row(acct, order)])

    def _cancel(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        market, category = self._inst(p.get("instId"))
        order_id, cid = self._order_ref(p)
        try:
            order = self.engine.cancel(
                acct, category=category, symbol=market.symbol, order_id=order_id, client_order_id=cid
            )
        except Reject:
            seen = self.engine.lookup_one(
                acct,
                category=category,
                symbol=market.symbol,
                order_id=order_id,
                client_order_id=cid,
                count_lookup=False,
            )
            if seen is None:
                raise _OrderError("51400") from None
            raise _OrderError("51402" if seen.status == "Filled" else "51401") from None
        row = self._item_row(p, order.order_id, "0", "")
        return self.ok([row], order_id=order.order_id)

    def _list_filters(self, p: dict) -> tuple[str | None, str | None]:
        inst_type = str(p.get("instType") or "").upper()
        category = {"SWAP": "linear", "SPOT": "spot"}.get(inst_type)
        symbol = None
        if p.get("instId"):
            market, category = self._inst(p["instId"])
            symbol = market.symbol
        return category, symbol

    def _pending(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        category, symbol = self._list_filters(req.params)
        orders = self.engine.query(acct, category=category, symbol=symbol, statuses=OPEN_STATUSES)
        return self.ok([self.order_row(acct, o) for o in orders[: self._limit(req.params)]])

    def _history(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        if not req.params.get("instType"):
            return self.error("50014", "Parameter instType can not be empty.")
        category, symbol = self._list_filters(req.params)
        orders = [o for o in self.engine.query(acct, category=category, symbol=symbol) if not o.is_open]
        return self.ok([self.order_row(acct, o) for o in orders[: self._limit(req.params)]])

    @staticmethod
    def _limit(p: dict) -> int:
        try:
            return max(1, min(100, int(p.get("limit") or 100)))
        except ValueError:
            return 100

    def _contracts(self, o: Order, base_qty: Decimal) -> Decimal:
        if o.category != "linear":
            return base_qty
        return base_qty / self.engine.markets[o.symbol].okx_ct_val

    def order_row(self, acct: Account, o: Order) -> dict:
        """An order as ``/api/v5/trade/order`` shows it (sizes in contracts for swaps)."""
        market = self.engine.markets[o.symbol]
        if o.category == "linear":
            pos_side = o.position_side or "net"
            fee_ccy = market.quote
        else:
            pos_side = ""
            fee_ccy = o.fee_coin or (market.base if o.side == "Buy" else market.quote)
        quote_sized = o.quote_qty is not None
        last = next((e for e in reversed(acct.executions) if e.order_id == o.order_id), None)
        return {
            "accFillSz": fmt(self._contracts(o, o.cum_qty)),
            "algoClOrdId": "",
            "algoId": "",
            "attachAlgoClOrdId": "",
            "attachAlgoOrds": [],
            "avgPx": fmt(o.avg_price) if o.cum_qty else "",
            "cTime": str(o.created_ms),
            "cancelSource": "1" if o.status == "Cancelled" else "",
            "cancelSourceReason": "",
            "category": "normal",
            "ccy": "",
            "clOrdId": o.client_order_id,
            "fee": fmt(-o.cum_fee) if o.cum_fee else "0",
            "feeCcy": fee_ccy,
            "fillPx": fmt(last.price) if last else "",
            "fillSz": fmt(self._contracts(o, last.qty)) if last else "0",
            "fillTime": str(last.time_ms) if last else "",
            "instId": self.inst_id(market, o.category),
            "instType": "SWAP" if o.category == "linear" else "SPOT",
            "isTpLimit": "false",
            "lever": fmt(acct.leverage_for(o.symbol)) if o.category == "linear" else "",
            "linkedAlgoOrd": {"algoId": ""},
            "ordId": o.order_id,
            "ordType": "market" if o.order_type == "Market" else _TIF_ORD_TYPE.get(o.time_in_force, "limit"),
            "pnl": "0",
            "posSide": pos_side,
            "px": fmt(o.price) if o.price is not None else "",
            "pxType": "",
            "pxUsd": "",
            "pxVol": "",
            "quickMgnType": "",
            "rebate": "0",
            "rebateCcy": market.quote,
            "reduceOnly": "true" if o.reduce_only else "false",
            "side": o.side.lower(),
            "slOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "source": "",
            "state": _STATE.get(o.status, "live"),
            "stpId": "",
            "stpMode": "cancel_maker",
            "sz": fmt(o.quote_qty if quote_sized else self._contracts(o, o.qty)),
            "tag": "",
            "tdMode": o.margin_mode if o.category == "linear" else "cash",
            "tgtCcy": ("quote_ccy" if quote_sized else "base_ccy") if o.category == "spot" else "",
            "tpOrdPx": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tradeId": last.exec_id if last else "",
            "uTime": str(o.updated_ms),
        }

    def _fills(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        category, symbol = self._list_filters(req.params)
        execs = self.engine.executions(acct, category=category, symbol=symbol, order_id=req.params.get("ordId") or None)
        return self.ok([self.fill_row(acct, e) for e in execs[: self._limit(req.params)]])

    def fill_row(self, acct: Account, e: Execution) -> dict:
        market = self.engine.markets[e.symbol]
        order = acct.orders.get(e.order_id)
        qty = e.qty / market.okx_ct_val if e.category == "linear" else e.qty
        return {
            "instType": "SWAP" if e.category == "linear" else "SPOT",
            "instId": self.inst_id(market, e.category),
            "tradeId": e.exec_id,
            "ordId": e.order_id,
            "clOrdId": e.client_order_id,
            "billId": str(e.seq),
            "subType": "1",
            "tag": "",
            "fillPx": fmt(e.price),
            "fillSz": fmt(qty),
            "fillIdxPx": fmt(market.price),
            "fillPnl": "0",
            "fillMarkPx": fmt(market.price),
            "side": e.side.lower(),
            "posSide": (order.position_side or "net") if (order and e.category == "linear") else "",
            "execType": "M" if e.is_maker else "T",
            "feeCcy": e.fee_coin,
            "fee": fmt(-e.fee),
            "ts": str(e.time_ms),
            "fillTime": str(e.time_ms),
        }

    # ------------------------------------------------------------ positions
    def _positions(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        inst_type = str(p.get("instType") or "").upper()
        if inst_type and inst_type != "SWAP":
            return self.ok([])
        wanted = None
        if p.get("instId"):
            wanted = {self.engine.market(i).symbol for i in str(p["instId"]).split(",") if i}
        rows = []
        for sym, pos in sorted(acct.positions.items()):
            if pos.size != 0 and (wanted is None or sym in wanted):
                rows.append(self.position_row(acct, self.engine.markets[sym], "net", pos))
        for (sym, side), pos in sorted(acct.hedge_positions.items()):
            if pos.size != 0 and (wanted is None or sym in wanted):
                rows.append(self.position_row(acct, self.engine.markets[sym], side, pos))
        return self.ok(rows)

    def position_row(self, acct: Account, m: Market, pos_side: str, pos) -> dict:
        contracts = pos.size / m.okx_ct_val
        if pos_side != "net":
            contracts = abs(contracts)  # long/short mode: pos is positive on both sides
        lev = acct.leverage_for(m.symbol)
        notional = abs(pos.size) * m.price
        imr = notional / lev
        upnl = pos.size * (m.price - pos.entry_price)
        long = pos.size > 0
        liq = pos.entry_price * ((1 - 1 / lev + Decimal("0.004")) if long else (1 + 1 / lev - Decimal("0.004")))
        mode = acct.margin_modes.get(m.symbol, "cross")
        return {
            "adl": "1",
            "availPos": fmt(abs(contracts)),
            "avgPx": fmt(pos.entry_price),
            "bePx": fmt(pos.entry_price),
            "cTime": str(pos.created_ms),
            "ccy": m.quote,
            "closeOrderAlgo": [],
            "deltaBS": "",
            "deltaPA": "",
            "fee": "0",
            "fundingFee": "0",
            "gammaBS": "",
            "gammaPA": "",
            "idxPx": fmt(m.price),
            "imr": fmt(imr) if mode == "cross" else "",
            "instId": m.okx_swap_id,
            "instType": "SWAP",
            "interest": "",
            "last": fmt(m.price),
            "lever": fmt(lev),
            "liab": "",
            "liabCcy": "",
            "liqPenalty": "0",
            "liqPx": fmt(liq.quantize(m.tick)),
            "margin": fmt(imr) if mode == "isolated" else "",
            "markPx": fmt(m.price),
            "mgnMode": mode,
            "mgnRatio": "100",
            "mmr": fmt(notional * Decimal("0.004")),
            "notionalUsd": fmt(notional),
            "optVal": "",
            "pendingCloseOrdLiabVal": "0",
            "pnl": fmt(pos.realised_pnl),
            "pos": fmt(contracts),
            "posCcy": "",
            "posId": f"{m.symbol}-{pos_side}",
            "posSide": pos_side,
            "quoteBal": "",
            "realizedPnl": fmt(pos.realised_pnl),
            "spotInUseAmt": "",
            "spotInUseCcy": "",
            "thetaBS": "",
            "thetaPA": "",
            "tradeId": "",
            "uTime": str(pos.updated_ms),
            "upl": fmt(upnl),
            "uplLastPx": fmt(upnl),
            "uplRatio": fmt(upnl / imr) if imr else "0",
            "uplRatioLastPx": fmt(upnl / imr) if imr else "0",
            "usdPx": "",
            "vegaBS": "",
            "vegaPA": "",
        }

    # ------------------------------------------------------------- account
    def _balance(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        wanted = {c for c in str(req.params.get("ccy") or "").split(",") if c}
        locked = self.engine.spot_locked(acct)
        upnl = self.engine.total_unrealised(acct)
        pos_im = self.engine.position_im(acct)
        ord_im = self.engine.order_im(acct)
        now = str(self.engine.now_ms())
        details, total_eq = [], Decimal(0)
        for coin, wallet in sorted(acct.balances.items()):
            if wanted and coin not in wanted:
                continue
            if wallet == 0 and coin != "USDT":
                continue
            is_usdt = coin == "USDT"
            eq = wallet + (upnl if is_usdt else Decimal(0))
            if is_usdt:
                frozen = pos_im + ord_im + locked.get(coin, Decimal(0))
                avail = self.engine.available(acct, coin)
                price = Decimal(1)
            else:
                frozen = locked.get(coin, Decimal(0))
                avail = wallet - frozen
                price = self.engine.markets[f"{coin}USDT"].price
            total_eq += eq * price
            details.append(
                {
                    "availBal": fmt(avail),
                    "availEq": fmt(avail),
                    "cashBal": fmt(wallet),
                    "ccy": coin,
                    "crossLiab": "",
                    "disEq": fmt(eq * price),
                    "eq": fmt(eq),
                    "eqUsd": fmt(eq * price),
                    "fixedBal": "0",
                    "frozenBal": fmt(frozen),
                    "imr": fmt(pos_im) if is_usdt else "0",
                    "interest": "",
                    "isoEq": "0",
                    "isoLiab": "",
                    "isoUpl": "0",
                    "liab": "",
                    "maxLoan": "",
                    "mgnRatio": "",
                    "mmr": fmt(pos_im / 25) if is_usdt else "0",
                    "notionalLever": "",
                    "ordFrozen": fmt(ord_im) if is_usdt else "0",
                    "spotInUseAmt": "",
                    "stgyEq": "0",
                    "twap": "0",
                    "uTime": now,
                    "upl": fmt(upnl) if is_usdt else "0",
                    "uplLiab": "",
                }
            )
        entry = {
            "adjEq": fmt(total_eq),
            "borrowFroz": "",
            "details": details,
            "imr": fmt(pos_im),
            "isoEq": "0",
            "mgnRatio": "",
            "mmr": fmt(pos_im / 25),
            "notionalUsd": "",
            "ordFroz": fmt(ord_im),
            "totalEq": fmt(total_eq),
            "uTime": now,
            "upl": fmt(upnl),
        }
        return self.ok([entry])

    def _config(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        return self.ok(
            [
                {
                    "acctLv": acct.config.get("acct_lv", "2"),
                    "acctStpMode": "cancel_maker",
                    "autoLoan": False,
                    "ctIsoMode": "automatic",
                    "enableSpotBorrow": False,
                    "greeksType": "PA",
                    "ip": "",
                    "kycLv": "2",
                    "label": "tvtrader emulator",
                    "level": "Lv1",
                    "levelTmp": "",
                    "liquidationGear": "-1",
                    "mainUid": "100000001",
                    "mgnIsoMode": "automatic",
                    "opAuth": "0",
                    "perm": "read_only,trade",
                    "posMode": "long_short_mode" if acct.hedge_mode else "net_mode",
                    "roleType": "0",
                    "spotBorrowAutoRepay": False,
                    "spotOffsetType": "",
                    "spotRoleType": "0",
                    "spotTraderInsts": [],
                    "traderInsts": [],
                    "type": "0",
                    "uid": "100000001",
                }
            ]
        )

    def _set_leverage(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        p = req.params
        for name in ("lever", "mgnMode"):
            if p.get(name) in (None, ""):
                return self.error("50014", f"Parameter {name} can not be empty.")
        if not p.get("instId"):
            return self.error("50014", "Parameter instId can not be empty.")
        market, category = self._inst(p["instId"])
        mode = str(p["mgnMode"]).lower()
        if category != "linear" or mode not in ("cross", "isolated"):
            return self.error("51000", "Parameter mgnMode error")
        pos_side = str(p.get("posSide") or "")
        if mode == "isolated" and acct.hedge_mode and pos_side not in ("long", "short"):
            return self.error("51000", "Parameter posSide error")
        lev = _d(p["lever"], "lever")
        if lev < 1 or lev > market.max_leverage:
            return self.error("51000", "Parameter lever error")
        # OKX answers the same whether or not the value changed.
        self.engine.set_leverage(acct, market.symbol, lev)
        return self.ok([{"instId": market.okx_swap_id, "lever": fmt(lev), "mgnMode": mode, "posSide": pos_side}])

    def _set_position_mode(self, req: WireRequest, acct: Account, effects: BookingEffects) -> WireResponse:
        mode = str(req.params.get("posMode", ""))
        if mode not in ("net_mode", "long_short_mode"):
            return self.error("51000", "Parameter posMode error")
        self.engine.set_position_mode(acct, mode == "long_short_mode")
        return self.ok([{"posMode": mode}])
