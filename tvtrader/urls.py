"""URL routes."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from signals import views as signal_views
from tvtrader.ops import views as ops_views

urlpatterns = [
    path("tv-webhook", signal_views.tv_webhook, name="tv-webhook"),
    path("tv-webhook/", signal_views.tv_webhook),
    path("health", signal_views.health, name="health"),
    path("admin/", admin.site.urls),
    path("api/", include("tvtrader.api.urls")),
    path("metrics", ops_views.metrics, name="metrics"),
    # Nothing public lives here: the host's root opens the console.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
