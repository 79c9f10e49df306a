"""The first-cut admin: signals are listed and inspectable (redacted raw body, content type),
strategies are created and edited with a write-only passphrase, refusals are visible."""

import pytest

from signals.models import WebhookRejection
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def test_webhook_rejections_are_listed_read_only(admin_client, post_alert):
    StrategyFactory(strategy_id="demo")
    post_alert(passphrase="guess")

    page = admin_client.get("/admin/signals/webhookrejection/").content.decode()
    assert "bad_passphrase" in page
    row = WebhookRejection.objects.get()
    assert admin_client.post(f"/admin/signals/webhookrejection/{row.pk}/delete/").status_code == 403
