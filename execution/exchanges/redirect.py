"""Send a sync ccxt exchange's HTTPS traffic to another base URL.

:func:`redirect_exchange` mounts a ``requests`` transport adapter on the ccxt
instance's ``session`` for ``https://``. The adapter rewrites the scheme, host
and port of every outgoing request to ``base_url`` and keeps path and query
byte for byte. ccxt itself is untouched: it still builds and signs the
production URLs (``https://api.bybit.com/v5/...``,
``https://fapi.binance.com/fapi/...``), and its URL-dependent logic - notably
Binance's choice of error table by hostname, which maps -2019 to
InsufficientFunds only for ``https://fapi.binance.com/`` - behaves exactly as
in production. Overriding ``exchange.urls`` instead would silently change that
mapping.

This is how a testnet-mode account can target the local exchange emulator
(``python -m emulator``): create the ccxt instance as for
production, then ``redirect_exchange(exchange, "http://127.0.0.1:8800")``.

Each redirected request carries ``X-Forwarded-Host`` with the host ccxt aimed
at, which the emulator ignores but a proxy log may find useful.

Async ccxt (``ccxt.pro``, the private WebSocket streams) talks through aiohttp
instead: :func:`redirect_session` builds an ``aiohttp.ClientSession`` whose
client middleware does the same rewrite for ``https://`` requests (to the base
URL's scheme) and ``wss://`` connections (to ``ws://`` for an ``http://``
base), so the streams' URLs, listenKey requests and their signatures are the
production ones too. Pass it as the exchange's ``session``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter

__all__ = ["RedirectAdapter", "redirect_exchange", "redirect_session"]


def _target(base_url: str):
    target = urlsplit(base_url)
    if target.scheme not in ("http", "https") or not target.netloc:
        raise ValueError(f"base_url must be http(s)://host[:port], not {base_url!r}")
    if target.path not in ("", "/"):
        raise ValueError("base_url must not have a path; paths are kept as sent")
    return target


class RedirectAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that re-targets every request at ``base_url``."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        target = _target(base_url)
        self.scheme = target.scheme
        self.netloc = target.netloc
        # A thread pool larger than requests' default of 10 connections, so
        # an instance shared by a few threads does not churn connections.
        kwargs.setdefault("pool_connections", 4)
        kwargs.setdefault("pool_maxsize", 32)
        super().__init__(**kwargs)

    def send(self, request: Any, **kwargs: Any) -> Any:
        original = urlsplit(request.url)
        request.url = urlunsplit((self.scheme, self.netloc, original.path, original.query, original.fragment))
        request.headers["X-Forwarded-Host"] = original.netloc
        # requests set Host from the original URL only if it was given
        # explicitly; let urllib3 derive it from the rewritten URL.
        request.headers.pop("Host", None)
        return super().send(request, **kwargs)


def redirect_exchange(exchange: Any, base_url: str, **adapter_kwargs: Any) -> Any:
    """Redirect all ``https://`` requests of a sync ccxt ``exchange`` to ``base_url``.

    Returns the exchange for chaining. ``base_url`` is e.g.
    ``"http://127.0.0.1:8800"``. Plain ``http://`` URLs are left alone.
    """
    session = getattr(exchange, "session", None)
    if session is None or not hasattr(session, "mount"):
        raise TypeError("redirect_exchange needs a sync ccxt exchange with a requests session")
    session.mount("https://", RedirectAdapter(base_url, **adapter_kwargs))
    return exchange


def redirect_session(base_url: str) -> Any:
    """An ``aiohttp.ClientSession`` sending ``https://`` and ``wss://`` traffic to
    ``base_url`` (call it inside the event loop that will use it; the caller closes it)."""
    import aiohttp
    from yarl import URL

    target = _target(base_url)
    base = URL(base_url)
    schemes = {"https": base.scheme, "wss": "ws" if base.scheme == "http" else "wss"}

    async def redirect(request: Any, handler: Any) -> Any:
        original = request.url
        scheme = schemes.get(original.scheme)
        if scheme is not None:
            request.url = original.with_scheme(scheme).with_host(base.host).with_port(base.port)
            request.headers["Host"] = target.netloc
            request.headers["X-Forwarded-Host"] = original.host or ""
        return await handler(request)

    return aiohttp.ClientSession(middlewares=(redirect,))
