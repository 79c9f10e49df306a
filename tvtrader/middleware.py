"""Resolve the real client address.

REMOTE_ADDR is the TCP peer. Only when that peer is a configured trusted proxy (nginx on
this host) is the address nginx put in X-Forwarded-For used instead; anyone else can
forge that header, so it is ignored for them, and so is their X-Forwarded-Proto (the HTTPS
flag). Everything downstream (the webhook's IP allowlist, rejection counters, admin
lockouts) reads `request.META["REMOTE_ADDR"]`.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


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
        if self.trusted:
            peer = request.META.get("REMOTE_ADDR", "")
            forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
            if not self._is_trusted(peer):
                # SECURE_PROXY_SSL_HEADER believes X-Forwarded-Proto from anyone; only our
                # proxy may say a request arrived over HTTPS.
                request.META.pop("HTTP_X_FORWARDED_PROTO", None)
            elif forwarded:
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
