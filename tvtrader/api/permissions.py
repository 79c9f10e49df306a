"""Scopes: a read token can never change anything; control is needed for every write."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from .models import ApiToken


def request_scope(request) -> str | None:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        return auth.scope
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return ApiToken.Scope.CONTROL if user.is_superuser else ApiToken.Scope.READ
    return None


class ReadScope(BasePermission):
    """Any valid token or a staff session; only safe methods unless the view says more."""

    message = "A valid API token is required."

    def has_permission(self, request, view) -> bool:
        scope = request_scope(request)
        if scope is None:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return scope == ApiToken.Scope.CONTROL


class ControlScope(BasePermission):
    message = "This needs a token with the control scope."

    def has_permission(self, request, view) -> bool:
        return request_scope(request) == ApiToken.Scope.CONTROL
