"""Who is calling: an API token (`Authorization: Bearer tvt_…` or `Token tvt_…`), or a
staff member's admin session (for the browsable docs)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiToken, token_hash

KEYWORDS = (b"bearer", b"token")


def token_from_header(header: bytes | str) -> str | None:
    if isinstance(header, str):
        header = header.encode("latin-1", "replace")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() not in KEYWORDS:
        return None
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


def api_token_lookup(raw: str) -> ApiToken | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(raw), revoked=False, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .first()
    )
    if token is not None and (token.last_used_at is None or timezone.now() - token.last_used_at > timedelta(minutes=1)):
        # At most one write a minute per token: "last used" is for the operator, not a log.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        raw = token_from_header(header)
        if raw is None:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        token = api_token_lookup(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        # A 401 (not 403) with WWW-Authenticate when the token is missing or wrong.
        return self.keyword


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """The admin session, for staff only (read scope; control needs a superuser)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result
