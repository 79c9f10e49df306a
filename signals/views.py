"""HTTP adapters: the TradingView webhook and the health check.

The webhook is a plain Django view rather than a DRF one: it must accept `text/plain`
bodies that are JSON, and every microsecond on this path is latency before an order.
"""

from __future__ import annotations

import json
import logging
import time

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import selectors
from .deadline import DeadlineExceeded, database_outcome, webhook_budget, webhook_deadline
from .outbox import signal_enqueue
from .services import IngestResult, signal_ingest, webhook_rejection_record, webhook_unavailable_record

logger = logging.getLogger("tvtrader.signals")


def _json(body: dict, status: int) -> HttpResponse:
    return HttpResponse(json.dumps(body, default=str), status=status, content_type="application/json")


@csrf_exempt
def tv_webhook(request: HttpRequest) -> HttpResponse:
    # Arrival first, before anything that can wait: nginx's request-start time when our
    # proxy sent it (tvtrader.middleware), else now. A market's signals run in this order,
    # and the stale cut-off judges it.
    received_at = request.META.get("TVTRADER_ARRIVED_AT") or timezone.now()
    started = time.perf_counter()
    if request.method != "POST":
        response = _json({"status": "rejected", "reason": "use POST"}, 405)
        response["Allow"] = "POST"
        return response
    accepted: list[tuple[int, str]] = []
    try:
        body = request.body
    except Exception:  # RequestDataTooBig and friends: refuse, never 500
        webhook_rejection_record(source=request.META.get("REMOTE_ADDR"), reason="body_too_large")
        return _json({"status": "rejected", "reason": "body too large"}, 413)
    # Django's per-request connection health check is a `SELECT 1` round trip before the
    # first query. The webhook skips it and instead, when a kept connection turns out to have
    # died while idle (PostgreSQL restarted), replaces it and tries the alert once more. A
    # second try is safe: the alert's dedup key makes it an ordinary resend.
    kept = connection.connection is not None
    connection.health_check_done = True
    failure = ""
    arrived = request.META.get("TVTRADER_ARRIVED_AT")
    waited = (timezone.now() - arrived).total_seconds() if arrived else 0.0
    budget = webhook_budget(deadline=settings.WEBHOOK_DEADLINE_SECONDS, waited=waited)
    wrote = False
    if not budget:
        # Nothing is tried: the database timed out a moment ago in this process, or the
        # request waited so long upstream that its answer would come too late (nginx has
        # answered 503 already: recording it now would execute an alert refused to TradingView).
        failure = "database_timeout_recently" if waited < settings.WEBHOOK_DEADLINE_SECONDS else "waited_upstream"
    else:
        with webhook_deadline(budget) as deadline:
            try:
                for attempt in (1, 2):
                    try:
                        result = signal_ingest(
                            body=body,
                            content_type=request.META.get("CONTENT_TYPE", ""),
                            remote_addr=request.META.get("REMOTE_ADDR"),
                            received_at=received_at,
                            user_agent=request.META.get("HTTP_USER_AGENT", ""),
                            on_accepted=lambda signal_id, strategy_key: accepted.append((signal_id, strategy_key)),
                        )
                        break
                    except DatabaseError as exc:  # django.db.Error: OperationalError, InterfaceError, ...
                        if attempt == 1 and kept and not connection.is_usable():
                            logger.warning("event=webhook_db_reconnect reason=kept connection found dead")
                            connection.close()
                            continue
                        failure = f"database_error:{type(exc).__name__}"
                        break
            except DeadlineExceeded:
                failure = "database_timeout"
        wrote = deadline.wrote
        if failure in ("", "database_timeout"):
            database_outcome(timed_out=bool(failure))
    if failure and budget:
        connection.close()  # whatever state it is in, the next request starts on a fresh one
        if accepted:  # committed after all (the error came later): the answer says so
            failure = ""
            result = IngestResult(http_status=202, status="accepted", signal_id=accepted[0][0])
    if failure:
        elapsed_ms = (time.perf_counter() - started) * 1000
        webhook_unavailable_record(
            body=body,
            source=request.META.get("REMOTE_ADDR"),
            received_at=received_at,
            failure=failure,
            maybe_recorded=wrote,
            elapsed_ms=elapsed_ms,
        )
        reason = "database unavailable, retry"
        if wrote:
            reason += " (the alert may have been recorded: a resend is answered duplicate)"
        return _json({"status": "error", "reason": reason}, 503)

    payload = result.as_dict()
    payload["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
    response = _json(payload, result.http_status)
    if accepted:
        # Queue after the answer is on the wire: the row is already committed, the broker
        # is only a wake-up, and a slow or dead broker must not delay TradingView's answer.
        response._resource_closers.append(lambda: [signal_enqueue(*item) for item in accepted])
    return response


def health(request: HttpRequest) -> HttpResponse:
    report = selectors.health_report()
    return _json(report, 200 if report["ok"] else 503)
