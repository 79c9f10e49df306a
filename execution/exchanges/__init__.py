"""Exchange access. Everything outside this package talks to venues through
`gateway_for(account)`; nothing else imports ccxt."""

from __future__ import annotations

import threading

from .base import (
    CLIENT_ID_RULES,
    Gateway,
    MarketInfo,
    OrderState,
    PositionInfo,
    client_order_id_problem,
    tradingview_to_ccxt,
)
from .errors import (
    GatewayError,
    Misconfigured,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    SendAborted,
    TemporaryError,
)

__all__ = [
    "CLIENT_ID_RULES",
    "client_order_id_problem",
    "Gateway",
    "MarketInfo",
    "OrderState",
    "PositionInfo",
    "tradingview_to_ccxt",
    "gateway_for",
    "GatewayError",
    "SendAborted",
    "Misconfigured",
    "OrderNotFound",
    "OrderRejected",
    "RateLimited",
    "TemporaryError",
]

_gateways: dict[tuple, Gateway] = {}
_lock = threading.Lock()


def gateway_for(account, *, paper: bool = False, scratch: bool = False) -> Gateway:
    """The gateway for `account` in this process: paper when the account is paper (or the
    caller asks for paper), else ccxt. `scratch` (test signals): a paper gateway whose orders
    fill against the account's paper book without ever changing it — its positions,
    balance and P&L stay what the trader watches. One per account per process, rebuilt when
    the account row changes (credentials, mode, base URL)."""
    from django.conf import settings

    use_paper = paper or scratch or account.mode == "paper"
    key = (account.pk, account.updated_at, use_paper, scratch)
    gateway = _gateways.get(key)
    if gateway is not None:
        return gateway
    with _lock:
        gateway = _gateways.get(key)
        if gateway is None:
            if use_paper:
                from .paper import PaperGateway

                gateway = PaperGateway(account, scratch=scratch)
            else:
                if account.mode == "live" and not settings.LIVE_TRADING:
                    raise Misconfigured("live trading is switched off (LIVE_TRADING=false)")
                from .ccxt_gateway import CcxtGateway

                gateway = CcxtGateway(
                    account_id=account.pk,
                    exchange=account.exchange,
                    mode=account.mode,
                    market_type=account.market_type,
                    credentials=account.credentials(),
                    base_url=account.base_url,
                    label=account.label,
                    position_mode=account.position_mode,
                    margin_mode=account.margin_mode,
                )
            for stale in [k for k in _gateways if k[0] == account.pk and k[2:] == key[2:]]:
                del _gateways[stale]
            _gateways[key] = gateway
    return gateway
