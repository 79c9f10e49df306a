"""Never double: TradingView's resends and Pine double-fires collapse into one signal through
the unique dedup key, also when fifty identical alerts arrive at once over real HTTP."""

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F

from signals.models import Signal
from tests.conftest import alert_body
from tests.factories import StrategyFactory


def now_iso(offset_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).isoformat().replace("+00:00", "Z")


def next_second() -> None:
    """Wait for the clock to enter the next second (a new 1-second dedup bucket)."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.005)


def post_many_at_once(url: str, body: dict, n: int, headers=None) -> list[tuple[int, dict]]:
    """n threads, each with its own TCP connection, released together by a barrier.
    `headers(i)` gives extra headers for the i-th request."""
    data = json.dumps(body).encode()
    barrier = threading.Barrier(n)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send(i):
        extra = headers(i) if headers else {}
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "text/plain", **extra}, method="POST")
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                outcome = (response.status, json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            outcome = (exc.code, json.loads(exc.read() or b"{}"))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("with_bar_time", [True, False], ids=["bar_time", "window"])
def test_fifty_identical_alerts_posted_at_once_create_exactly_one_signal(threaded_server, with_bar_time):
    StrategyFactory(strategy_id="demo", dedup_window_seconds=60)
    body = alert_body() if with_bar_time else alert_body(bar_time=...)

    results = post_many_at_once(threaded_server + "/tv-webhook", body, 50)

    assert len(results) == 50
    statuses = sorted(r[1]["status"] for r in results)
    assert statuses == ["accepted"] + ["duplicate"] * 49, statuses
    assert {code for code, _ in results} == {200, 202}
    assert Signal.objects.count() == 1
    signal = Signal.objects.get()
    assert {r[1]["signal_id"] for r in results} == {signal.pk}
    assert signal.duplicate_count == 49


@pytest.mark.django_db
class TestDuplicatesOneAtATime:
    @pytest.fixture(autouse=True)
    def demo(self):
        return StrategyFactory(strategy_id="demo", dedup_window_seconds=1)

    def test_tradingview_resend_is_answered_duplicate_with_the_original_id(self, post_alert):
        first = post_alert()
        resend = post_alert()

        assert resend.status_code == 200
        assert resend.json()["status"] == "duplicate"
        assert resend.json()["signal_id"] == first.json()["signal_id"]
        assert Signal.objects.get().last_duplicate_at is not None

    def test_pine_double_fire_on_one_bar_is_one_signal(self, post_alert):
        # The script fires twice for the same bar; {{timenow}} differs by a second.
        post_alert(fired_at="2026-11-24T02:14:59Z")
        second = post_alert(fired_at="2026-11-24T02:15:00Z", price=65001)

        assert second.json()["status"] == "duplicate"
        assert Signal.objects.count() == 1

    @pytest.mark.parametrize(
        "difference",
        [
            {"bar_time": "2026-11-24T02:15:00Z"},
            {"order_id": "Long Entry 2"},
            {"action": "sell"},
            {"ticker": "ETHUSDT.P"},
        ],
        ids=["next-bar", "other-order-id", "other-action", "other-ticker"],
    )
    def test_distinct_alerts_are_not_collapsed(self, post_alert, difference):
        first = post_alert(order_id="Long Entry")
        other = post_alert(**{"order_id": "Long Entry", **difference})

        assert first.json()["status"] == other.json()["status"] == "accepted"
        assert Signal.objects.count() == 2

    def test_same_alert_on_another_strategy_is_its_own_signal(self, post_alert):
        StrategyFactory(strategy_id="other")
        post_alert()
        assert post_alert(strategy_id="other").json()["status"] == "accepted"

    def test_without_bar_time_identical_alerts_inside_the_window_are_one(self, post_alert, demo):
        demo.dedup_window_seconds = 60
        demo.save()
        post_alert(bar_time=...)
        assert post_alert(bar_time=...).json()["status"] == "duplicate"

    def test_without_bar_time_the_same_alert_after_the_window_is_new(self, post_alert):
        post_alert(bar_time=...)
        time.sleep(1.2)
        assert post_alert(bar_time=...).json()["status"] == "accepted"
        assert Signal.objects.count() == 2

    def test_without_bar_time_a_resend_long_after_the_window_is_still_a_duplicate_by_its_fired_at(self, post_alert):
        fired = now_iso()
        first = post_alert(bar_time=..., fired_at=fired)
        # The window (1 s here) passed long ago, as if TradingView's resend came minutes later:
        # the original arrived three minutes back, and the resend falls in another bucket.
        Signal.objects.update(received_at=F("received_at") - timedelta(minutes=3))
        next_second()

        resend = post_alert(bar_time=..., fired_at=fired)

        assert resend.status_code == 200, resend.content
        assert resend.json() | {"elapsed_ms": 0} == {
            "status": "duplicate",
            "signal_id": first.json()["signal_id"],
            "reason": "duplicate alert",
            "elapsed_ms": 0,
        }
        assert Signal.objects.get().duplicate_count == 1

    def test_without_bar_time_a_new_firing_after_the_window_is_a_new_signal(self, post_alert):
        post_alert(bar_time=..., fired_at=now_iso(-90))
        Signal.objects.update(received_at=F("received_at") - timedelta(minutes=3))
        next_second()

        assert post_alert(bar_time=..., fired_at=now_iso()).json()["status"] == "accepted"
        assert Signal.objects.count() == 2

    def test_rejected_alerts_are_never_deduplicated_away(self, post_alert):
        post_alert(price="{{close}}")
        post_alert(price="{{close}}")
        assert Signal.objects.filter(status="rejected").count() == 2

    def test_dedup_is_a_database_constraint(self, post_alert):
        from django.db import IntegrityError, transaction

        signal = Signal.objects.get(pk=post_alert().json()["signal_id"])
        with pytest.raises(IntegrityError), transaction.atomic():
            Signal.objects.create(
                strategy=signal.strategy, status="accepted", received_at=signal.received_at, dedup_key=signal.dedup_key
            )
