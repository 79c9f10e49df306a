"""The REST API for scripts: thin views over selectors and the domain verbs."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import ExchangeAccount, Fill, Order, Position
from execution.services import strategy_sizing_preview
from signals.models import Signal
from signals.selectors import health_report
from signals.services import signal_send_test
from strategies import services as strategy_services
from strategies.models import Strategy, Subscription, TradingControl

from . import filters, serializers
from .models import ApiToken
from .permissions import ControlScope


class IdCursorPagination(CursorPagination):
    """Newest first by id: stable under inserts and cheap on a million rows (no COUNT)."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    invalid_cursor_message = "Invalid cursor: pass the `next` or `previous` link of a page as it came."

    def decode_cursor(self, request):
        """A cursor is ours only if it decodes and its position is an id: anything else
        (hand-made, truncated, tampered with) is a 400, never a query that fails."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ParseError(self.invalid_cursor_message) from exc
        if cursor is not None and cursor.position is not None:
            position = cursor.position
            if not (position.isascii() and position.isdigit() and len(position) <= 19 and int(position) < 2**63):
                raise ParseError(self.invalid_cursor_message)
        return cursor


def actor_for(request) -> str:
    user = request.user
    name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
    if isinstance(request.auth, ApiToken):
        return f"{name} (API token {request.auth.name})"[:150]
    return f"{name} (API)"[:150]


class SignalViewSet(viewsets.ReadOnlyModelViewSet):
    """Every alert that reached the webhook, newest first."""

    queryset = Signal.objects.select_related("strategy").defer("raw_body")
    pagination_class = IdCursorPagination
    filterset_class = filters.SignalFilter

    def get_serializer_class(self):
        return serializers.SignalDetailSerializer if self.action == "retrieve" else serializers.SignalSerializer

    def get_queryset(self):
        qs = super().get_queryset()
        return qs.prefetch_related("orders") if self.action == "retrieve" else qs.defer("payload")


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Order.objects.select_related("strategy", "account").defer("replies")
    serializer_class = serializers.OrderSerializer
    pagination_class = IdCursorPagination
    filterset_class = filters.OrderFilter


class FillViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Fill.objects.select_related("order__strategy")
    serializer_class = serializers.FillSerializer
    pagination_class = IdCursorPagination
    filterset_class = filters.FillFilter


class PositionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Position.objects.select_related("account", "strategy")
    serializer_class = serializers.PositionSerializer
    pagination_class = IdCursorPagination
    filterset_class = filters.PositionFilter


def _switch_response(changed: bool, halted: bool) -> Response:
    return Response(serializers.SwitchResultSerializer({"changed": changed, "halted": halted}).data)


_switch_schema = extend_schema(
    request=serializers.SwitchRequestSerializer, responses=serializers.SwitchResultSerializer
)


class AccountViewSet(viewsets.ReadOnlyModelViewSet):
    """Exchange accounts, without their credentials."""

    queryset = ExchangeAccount.objects.all()
    serializer_class = serializers.AccountSerializer
    pagination_class = IdCursorPagination
    filterset_fields = ["exchange", "mode", "halted"]

    @_switch_schema
    @action(detail=True, methods=["post"], permission_classes=[ControlScope])
    def kill(self, request, pk=None):
        """Engage this account's kill switch: every strategy on it stops trading."""
        account = self.get_object()
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.account_halt(
            account=account, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, True)

    @_switch_schema
    @action(detail=True, methods=["post"], permission_classes=[ControlScope])
    def resume(self, request, pk=None):
        account = self.get_object()
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.account_resume(
            account=account, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, False)


class StrategyViewSet(mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Strategies by their `strategy_id`. PATCH edits settings (validated like the admin,
    every change audited); the kill switch has its own verbs."""

    queryset = Strategy.objects.select_related("account").prefetch_related("subscriptions__account")
    serializer_class = serializers.StrategySerializer
    pagination_class = IdCursorPagination
    lookup_field = "strategy_id"
    lookup_value_regex = r"[A-Za-z0-9_.\-]+"
    filterset_fields = ["enabled", "halted"]
    http_method_names = ["get", "patch", "post", "head", "options"]

    def get_permissions(self):
        if self.action in ("partial_update", "update"):
            return [ControlScope()]
        return super().get_permissions()

    def perform_update(self, serializer):
        with transaction.atomic():
            strategy = Strategy.objects.select_for_update().get(pk=serializer.instance.pk)
            before = strategy_services.strategy_snapshot(strategy)
            serializer.instance = strategy
            serializer.save()
            strategy_services.strategy_audit_changes(before=before, strategy=strategy, actor=actor_for(self.request))

    @_switch_schema
    @action(detail=True, methods=["post"], permission_classes=[ControlScope])
    def kill(self, request, strategy_id=None):
        """Engage this strategy's kill switch: its alerts are recorded as blocked."""
        strategy = self.get_object()
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.strategy_halt(
            strategy=strategy, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, True)

    @_switch_schema
    @action(detail=True, methods=["post"], permission_classes=[ControlScope])
    def resume(self, request, strategy_id=None):
        strategy = self.get_object()
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.strategy_resume(
            strategy=strategy, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, False)

    def _subscription(self, sub_id: str):
        from django.shortcuts import get_object_or_404

        return get_object_or_404(
            Subscription.objects.select_related("strategy", "account"), pk=sub_id, strategy=self.get_object()
        )

    @_switch_schema
    @action(
        detail=True,
        methods=["post"],
        url_path=r"subscriptions/(?P<sub_id>[0-9]{1,12})/kill",
        permission_classes=[ControlScope],
    )
    def subscription_kill(self, request, strategy_id=None, sub_id=None):
        """Engage the kill switch of one account subscription: that account stops; the others trade on."""
        subscription = self._subscription(sub_id)
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.subscription_switch(
            subscription=subscription, engage=True, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, True)

    @_switch_schema
    @action(
        detail=True,
        methods=["post"],
        url_path=r"subscriptions/(?P<sub_id>[0-9]{1,12})/resume",
        permission_classes=[ControlScope],
    )
    def subscription_resume(self, request, strategy_id=None, sub_id=None):
        subscription = self._subscription(sub_id)
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.subscription_switch(
            subscription=subscription, engage=False, actor=actor_for(request), reason=body.validated_data["reason"]
        )
        return _switch_response(changed, False)

    @extend_schema(request=serializers.TestSignalRequestSerializer, responses={201: serializers.SignalSerializer})
    @action(detail=True, methods=["post"], url_path="test-signal", permission_classes=[ControlScope])
    def test_signal(self, request, strategy_id=None):
        """Send a test signal through the whole chain, on the paper gateway."""
        strategy = self.get_object()
        body = serializers.TestSignalRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        signal = signal_send_test(strategy=strategy, actor=actor_for(request), **body.validated_data)
        return Response(serializers.SignalSerializer(signal).data, status=201)

    @extend_schema(parameters=[serializers.SizingPreviewRequestSerializer])
    @action(detail=True, methods=["get"], url_path="sizing-preview")
    def sizing_preview(self, request, strategy_id=None):
        """What an alert at a price would send now, per subscribed account: quantity, notional
        and share of equity, planned by the engine's own planner. Nothing is placed."""
        strategy = self.get_object()
        query = serializers.SizingPreviewRequestSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(strategy_sizing_preview(strategy=strategy, **query.validated_data))


class GlobalSwitchView(APIView):
    """The global kill switch: while engaged, no strategy trades."""

    @extend_schema(responses=serializers.GlobalSwitchSerializer)
    def get(self, request):
        return Response(serializers.GlobalSwitchSerializer(TradingControl.current()).data)


class GlobalKillView(APIView):
    permission_classes = [ControlScope]

    @_switch_schema
    def post(self, request):
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.global_halt(actor=actor_for(request), reason=body.validated_data["reason"])
        return _switch_response(changed, True)


class GlobalResumeView(APIView):
    permission_classes = [ControlScope]

    @_switch_schema
    def post(self, request):
        body = serializers.SwitchRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        changed = strategy_services.global_resume(actor=actor_for(request), reason=body.validated_data["reason"])
        return _switch_response(changed, False)


class HealthView(APIView):
    """Database, broker and worker liveness and the age of the last signal. Always 200 here
    (read `ok`); the plain `/health` answers 503 for monitors when something is down."""

    @extend_schema(responses=serializers.HealthSerializer)
    def get(self, request):
        return Response(health_report())
