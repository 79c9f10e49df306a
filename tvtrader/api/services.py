"""Domain verbs for API tokens."""

from __future__ import annotations

from typing import Any

from .models import ApiToken


def api_token_create(*, user: Any, scope: str, name: str = "") -> tuple[ApiToken, str]:
    """Create a token and return it with its key. The key is never stored or shown again."""
    if scope not in ApiToken.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiToken.Scope.values)}")
    token = ApiToken(user=user, scope=scope, name=(name or f"{user.get_username()}-{scope}")[:80])
    raw = token.set_new_key()
    token.save()
    return token, raw


def api_token_revoke(*, token: ApiToken) -> bool:
    return bool(ApiToken.objects.filter(pk=token.pk, revoked=False).update(revoked=True))
