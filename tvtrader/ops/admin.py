"""Per-strategy notification targets in the admin (the Discord URL is write-only)."""

from django import forms
from django.contrib import admin, messages

from .models import NotificationTarget
from .notifications import notification_send


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
    list_display = ["strategy", "channel", "telegram_chat_id", "events", "enabled"]
    list_filter = ["channel", "enabled"]
    list_select_related = ["strategy"]
    actions = ["send_test"]

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test(self, request, queryset):
        count = 0
        for target in queryset.select_related("strategy"):
            count += notification_send(
                event="test", text=f"🔔 test message for {target.strategy}", strategy=target.strategy
            )
        self.message_user(request, f"Queued {count} message(s) on the notifications queue.", messages.INFO)
