"""Routes under /api/."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("signals", views.SignalViewSet, basename="signal")
router.register("orders", views.OrderViewSet, basename="order")
router.register("fills", views.FillViewSet, basename="fill")
router.register("positions", views.PositionViewSet, basename="position")
router.register("accounts", views.AccountViewSet, basename="account")
router.register("strategies", views.StrategyViewSet, basename="strategy")

urlpatterns = [
    path("global/", views.GlobalSwitchView.as_view(), name="api-global"),
    path("global/kill/", views.GlobalKillView.as_view(), name="api-global-kill"),
    path("global/resume/", views.GlobalResumeView.as_view(), name="api-global-resume"),
    path("health/", views.HealthView.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    *router.urls,
]
