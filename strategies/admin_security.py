"""Admin login hardening helpers (django-axes lockout key, django-otp second factor)."""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The address django-axes locks out: the TCP peer, which TrustedProxyMiddleware has
    already replaced with the forwarded client address only for trusted proxies. Reading
    X-Forwarded-For here would let an attacker pick a fresh address per attempt."""
    return request.META.get("REMOTE_ADDR")
