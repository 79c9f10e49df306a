"""API tokens for scripts: scoped (read or control), stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "tvt_"


def token_hash(raw: str) -> str:
    # Tokens are long random strings, so a fast unsalted hash is enough to make a leaked
    # table useless, and it keeps the lookup a single indexed equality.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "Read only"
        CONTROL = "control", "Control (kill switches, settings, test signals)"

    name = models.CharField(max_length=80, help_text="What this token is for, e.g. 'grafana' or 'my-bot'.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token.")
    revoked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="After this moment the token is refused. Empty: it does not expire."
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, {self.prefix}…)"

    @property
    def expired(self) -> bool:
        from django.utils import timezone

        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def can_control(self) -> bool:
        return self.scope == self.Scope.CONTROL and not self.revoked and not self.expired

    def set_new_key(self) -> str:
        """Generate a key, keep only its hash, and return the key (shown once)."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.key_hash = token_hash(raw)
        self.prefix = raw[:10]
        return raw
