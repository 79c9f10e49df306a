"""Per-strategy notification targets in the admin (the Discord URL is write-only)."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from .models import NotificationTarget
from .notifications import global_channels_status, notification_send_test


class NotificationTargetForm(forms.ModelForm):
    discord_webhook_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Stored encrypted and never shown again; leave empty to keep the current one.",
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = NotificationTarget
        fields = ["strategy", "channel", "telegram_chat_id", "events", "enabled"]

    def clean(self):
        data = super().clean()
        if (
            data.get("channel") == NotificationTarget.Channel.DISCORD
            and not data.get("discord_webhook_url")
            and not self.instance.discord_webhook_url_enc
        ):
            self.add_error("discord_webhook_url", "A Discord target needs its webhook URL.")
        return data

    def save(self, commit=True):
        url = self.cleaned_data.get("discord_webhook_url")
        if url:
            self.instance.set_discord_webhook_url(url)
        return super().save(commit)


@admin.register(NotificationTarget)
class NotificationTargetAdmin(admin.ModelAdmin):
    form = NotificationTargetForm
    list_display = ["strategy", "channel", "telegram_chat_id", "events", "enabled", "last_delivery", "last_failure"]
    list_filter = ["channel", "enabled"]
    list_select_related = ["strategy"]
    readonly_fields = ["last_delivery", "last_failure"]
    actions = ["send_test"]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "global_channels": global_channels_status()}
        return super().changelist_view(request, extra_context=extra_context)

    @admin.display(description="last delivery", ordering="last_sent_at")
    def last_delivery(self, obj: NotificationTarget) -> str:
        return _when(obj.last_sent_at) if obj.last_sent_at else "never"

    @admin.display(description="last error", ordering="last_error_at")
    def last_failure(self, obj: NotificationTarget) -> str:
        if not obj.last_error_at:
            return "none"
        return f"{_when(obj.last_error_at)}: {obj.last_error}"

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test(self, request, queryset):
        targets = list(queryset.select_related("strategy"))
        count = notification_send_test(targets=targets)
        skipped = len(targets) - count
        note = f" ({skipped} disabled target(s) skipped)" if skipped else ""
        self.message_user(
            request,
            f"Queued {count} test message(s), one per target, on the notifications queue{note}. "
            "Each target's last delivery or last error shows here once the worker has tried.",
            messages.INFO,
        )


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
