"""Per-strategy notification targets (the global channels come from the environment)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# What can be notified; `events` on a target filters them (empty: everything).
EVENTS = (
    "signal_executed",
    "signal_failed",
    "kill_switch",
    "reconcile_drift",
    "silence",
    "certificate",
    "test",
)


class NotificationTarget(models.Model):
    class Channel(models.TextChoices):
        TELEGRAM = "telegram", "Telegram"
        DISCORD = "discord", "Discord"

    strategy = models.ForeignKey("strategies.Strategy", on_delete=models.CASCADE, related_name="notification_targets")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    telegram_chat_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="Telegram chat id; messages go through the global bot (TELEGRAM_BOT_TOKEN).",
    )
    # The webhook URL embeds its own secret, so it is kept encrypted like exchange keys.
    discord_webhook_url_enc = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list, blank=True, help_text=f"Any of {', '.join(EVENTS)}; empty means all.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written by the notifications worker after each attempt (never a secret: see
    # notifications.delivery_record), shown in the admin.
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)

    class Meta:
        ordering = ["strategy", "channel"]

    def __str__(self) -> str:
        return f"{self.strategy} → {self.get_channel_display()}"

    def set_discord_webhook_url(self, url: str) -> None:
        from execution.credentials import encrypt

        self.discord_webhook_url_enc = encrypt(url) if url else ""

    def discord_webhook_url(self) -> str:
        from execution.credentials import decrypt

        return decrypt(self.discord_webhook_url_enc)

    def wants(self, event: str) -> bool:
        return self.enabled and (not self.events or event in self.events)

    def clean(self) -> None:
        if self.channel == self.Channel.TELEGRAM and not settings.TELEGRAM_BOT_TOKEN:
            raise ValidationError(
                {
                    "channel": "Telegram targets send through the global bot, and TELEGRAM_BOT_TOKEN is not set. "
                    "Set it in the environment and restart (docs/operations.md), or use a Discord webhook."
                }
            )
        if self.channel == self.Channel.TELEGRAM and not self.telegram_chat_id:
            raise ValidationError({"telegram_chat_id": "A Telegram target needs a chat id."})
        bad = [e for e in (self.events or []) if e not in EVENTS]
        if not isinstance(self.events, list) or bad:
            raise ValidationError({"events": f"Unknown events {bad}; use any of {', '.join(EVENTS)}."})
