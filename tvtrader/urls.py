"""URL routes."""

from django.contrib import admin
from django.urls import path

from signals import views as signal_views

urlpatterns = [
    path("tv-webhook", signal_views.tv_webhook, name="tv-webhook"),
    path("tv-webhook/", signal_views.tv_webhook),
    path("health", signal_views.health, name="health"),
    path("admin/", admin.site.urls),
]
