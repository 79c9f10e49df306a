"""Admin, first cut: strategies created and edited here, every change audited; the
per-strategy passphrase is write-only (only its hash is stored)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from .models import AuditEntry, Strategy, TradingControl
from .services import strategy_audit_changes, strategy_snapshot


class StrategyForm(forms.ModelForm):
    new_passphrase = forms.CharField(
        required=False,
        strip=True,
        min_length=8,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Set a passphrase for this strategy only (the global one then stops working for it). "
        "It is stored hashed and never shown again. Leave empty to keep the current one.",
    )
    clear_passphrase = forms.BooleanField(
        required=False, help_text="Remove this strategy's own passphrase (the global one applies again)."
    )

    class Meta:
        model = Strategy
        exclude = ("passphrase_hash",)

    def save(self, commit=True):
        strategy = super().save(commit=False)
        if self.cleaned_data.get("clear_passphrase"):
            strategy.set_passphrase(None)
        elif self.cleaned_data.get("new_passphrase"):
            strategy.set_passphrase(self.cleaned_data["new_passphrase"])
        if commit:
            strategy.save()
            self.save_m2m()
        return strategy


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    form = StrategyForm
    list_display = ("strategy_id", "name", "enabled", "halted", "account", "sizing_mode", "has_own_passphrase")
    list_filter = ("enabled", "halted", "account")
    search_fields = ("strategy_id", "name")
    list_select_related = ("account",)
    # Kill switches change through services (audited, logged), not a form field.
    readonly_fields = ("halted", "halted_at", "halted_by", "halt_reason", "created_at", "updated_at")

    @admin.display(boolean=True, description="own passphrase")
    def has_own_passphrase(self, obj: Strategy) -> bool:
        return bool(obj.passphrase_hash)

    def save_model(self, request, obj, form, change):
        before = strategy_snapshot(Strategy.objects.get(pk=obj.pk)) if change else {}
        super().save_model(request, obj, form, change)
        strategy_audit_changes(before=before, strategy=obj, actor=request.user)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "target_type", "target_id", "field", "old_value", "new_value", "note")
    list_filter = ("target_type", "field")
    search_fields = ("actor", "target_id", "note")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TradingControl)
class TradingControlAdmin(admin.ModelAdmin):
    list_display = ("__str__", "halted_at", "halted_by", "halt_reason")
    readonly_fields = ("halted", "halted_at", "halted_by", "halt_reason")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
