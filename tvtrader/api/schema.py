"""OpenAPI descriptions of our authentication classes (loaded by ApiConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tvtrader.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer tvt_…` (read or control scope).",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "tvtrader.api.authentication.StaffSessionAuthentication"
    name = "adminSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
