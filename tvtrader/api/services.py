"""Domain verbs for API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from .models import ApiToken


def api_token_create(*, user: Any, scope: str, name: str = "", days: int | None = None) -> tuple[ApiToken, str]:
    """Create a token and return it with its key. The key is never stored or shown again.
    With `days`, the token is refused from that many days on."""
    if scope not in ApiToken.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiToken.Scope.values)}")
    if days is not None and days <= 0:
        raise ValueError("days must be a positive number")
    token = ApiToken(user=user, scope=scope, name=(name or f"{user.get_username()}-{scope}")[:80])
    if days:
        token.expires_at = timezone.now() + timedelta(days=days)
    raw = token.set_new_key()
    token.save()
    return token, raw


def api_token_revoke(*, token: ApiToken) -> bool:
    return bool(ApiToken.objects.filter(pk=token.pk, revoked=False).update(revoked=True))
