"""Resolve the real client address.

REMOTE_ADDR is the TCP peer. Only when that peer is a configured trusted proxy (nginx on
this host) is the address nginx put in X-Forwarded-For used instead; anyone else can
forge that header, so it is ignored for them, and so are their X-Forwarded-Proto (the HTTPS
flag) and X-Request-Start (when nginx read the request: the alert's arrival time, put in
`request.META["TVTRADER_ARRIVED_AT"]`). Everything downstream (the webhook's IP allowlist,
rejection counters, admin lockouts) reads `request.META["REMOTE_ADDR"]`.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime

from django.conf import settings

# How far back nginx's request-start time is believed: a request cannot have waited in the
# proxy longer than this (its own timeouts are seconds), so an older stamp is a wrong clock.
_MAX_QUEUE_SECONDS = 300.0


def _request_start(value: str) -> datetime | None:
    """nginx's `X-Request-Start: t=<seconds.millis>` ($msec, when nginx read the request's
    first bytes): the alert's arrival, taken before anything in this process could wait.
    Clamped to now; None when absent or implausible."""
    if not value:
        return None
    try:
        stamp = float(value.strip().removeprefix("t="))
    except ValueError:
        return None
    now = time.time()
    if not (now - _MAX_QUEUE_SECONDS <= stamp <= now + 1.0):
        return None
    return datetime.fromtimestamp(min(stamp, now), tz=UTC)


def _networks(values):
    nets = []
    for value in values:
        nets.append(ipaddress.ip_network(value.strip(), strict=False))
    return nets


class TrustedProxyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.trusted = _networks(settings.TRUSTED_PROXIES)

    def __call__(self, request):
        request.META.pop("TVTRADER_ARRIVED_AT", None)
        if self.trusted:
            peer = request.META.get("REMOTE_ADDR", "")
            forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
            if not self._is_trusted(peer):
                # SECURE_PROXY_SSL_HEADER believes X-Forwarded-Proto from anyone; only our
                # proxy may say a request arrived over HTTPS.
                request.META.pop("HTTP_X_FORWARDED_PROTO", None)
                return self.get_response(request)
            arrived = _request_start(request.META.get("HTTP_X_REQUEST_START", ""))
            if arrived is not None:
                request.META["TVTRADER_ARRIVED_AT"] = arrived
            if forwarded:
                # The right-most address was appended by our proxy; nginx is configured to
                # overwrite the header with $remote_addr, so there is exactly one.
                candidate = forwarded.split(",")[-1].strip()
                try:
                    ipaddress.ip_address(candidate)
                except ValueError:
                    pass
                else:
                    request.META["TVTRADER_PROXY_ADDR"] = peer
                    request.META["REMOTE_ADDR"] = candidate
        return self.get_response(request)

    def _is_trusted(self, peer: str) -> bool:
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)
