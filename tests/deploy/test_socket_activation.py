"""The web process can die without refusing a single alert: the listening socket belongs to
systemd (deploy/templates/tvtrader-web.socket), gunicorn takes it over at each start, and
connections made while no gunicorn runs wait in the kernel's queue for the next one.

No systemd here runs units, so the test plays its part: it holds the socket and starts
gunicorn with LISTEN_FDS/LISTEN_PID, exactly as socket activation does."""

from __future__ import annotations

import json
import threading

import pytest

from signals.models import Signal
from tests.conftest import alert_body
from tests.factories import StrategyFactory
from tests.processes import GunicornProcess, app_env, http_post

pytestmark = pytest.mark.slow


def test_alerts_sent_while_gunicorn_is_killed_and_restarted_are_answered_not_refused(transactional_db, tmp_path):
    StrategyFactory(strategy_id="demo")
    server = GunicornProcess(app_env(), tmp_path / "gunicorn.log", workers=2, held_socket=True)
    try:
        server.start()
        webhook = server.url + "/tv-webhook"

        def post(hour: int) -> tuple:
            body = json.dumps(alert_body(bar_time=f"2026-11-24T{hour:02d}:00:00Z")).encode()
            try:
                return http_post(webhook, body, timeout=60)
            except OSError as exc:  # ConnectionRefusedError is what this test exists to rule out
                return (exc, {}, 0.0)

        status, body, _ = post(0)
        assert (status, body["status"]) == (202, "accepted")

        server.kill()  # a crash: master and workers gone at once
        answers: dict[int, tuple] = {}
        threads = [threading.Thread(target=lambda h=h: answers.__setitem__(h, post(h))) for h in range(1, 11)]
        for thread in threads:
            thread.start()
        server.start()  # what Restart=always does a second later
        for thread in threads:
            thread.join(timeout=90)

        assert sorted(answers) == list(range(1, 11))
        assert {h: (a[0], a[1].get("status")) for h, a in answers.items()} == {
            h: (202, "accepted") for h in range(1, 11)
        }
        assert Signal.objects.filter(status=Signal.Status.ACCEPTED).count() == 11
    finally:
        server.stop()
