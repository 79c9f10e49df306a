"""API tokens in the admin: created here (the key is shown once), revoked here."""

from django.contrib import admin
from django.template.response import TemplateResponse

from .models import ApiToken
from .services import api_token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "scope", "prefix", "revoked", "expires_at", "created_at", "last_used_at"]
    list_filter = ["scope", "revoked"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["name", "user", "scope", "revoked", "expires_at", "prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A token's scope is fixed once issued: issue a new one instead of widening it.
        return [*self.readonly_fields, "scope", "user"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        raw = None if change else obj.set_new_key()
        super().save_model(request, obj, form, change)
        if raw:
            # Kept on this request only: the answer to this POST shows it (response_add).
            # Never through `messages`, which travel in a signed (readable) cookie.
            request._issued_api_token = raw

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_issued_api_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": f"API token {obj.name} created",
            "token_obj": obj,
            "raw_token": raw,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/api/apitoken/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = sum(api_token_revoke(token=t) for t in queryset)
        self.message_user(request, f"Revoked {count} token(s).")
