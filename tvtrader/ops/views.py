"""`/metrics` for Prometheus: protected by METRICS_TOKEN, an API token, or the source address."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from tvtrader.api.authentication import api_token_lookup, token_from_header

from .metrics import TvtraderCollector


def _allowed(request: HttpRequest) -> bool:
    raw = token_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    if raw:
        if settings.METRICS_TOKEN and hmac.compare_digest(raw.encode(), settings.METRICS_TOKEN.encode()):
            return True
        if api_token_lookup(raw) is not None:  # any scope can read
            return True
    if settings.METRICS_ALLOWED_IPS:
        try:
            addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n.strip(), strict=False) for n in settings.METRICS_ALLOWED_IPS if n)
    return False


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TvtraderCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
