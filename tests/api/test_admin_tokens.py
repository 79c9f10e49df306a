"""Issuing an API token in the admin: the key is shown once, on the answer to the form, and
travels nowhere else (not in the `messages` cookie, which is signed but readable)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages.storage.cookie import CookieStorage

from tvtrader.api.models import ApiToken

from .conftest import client_with

pytestmark = pytest.mark.django_db


def test_a_token_created_in_the_admin_is_shown_once_on_the_page_and_never_in_a_cookie(admin_client):
    user = get_user_model().objects.get(username="admin")
    response = admin_client.post(
        "/admin/api/apitoken/add/",
        {"name": "grafana", "user": user.pk, "scope": "read", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200, response.content[:500]
    page = response.content.decode()
    shown = re.search(r'id="tv-issued-token">([^<]+)<', page).group(1).strip()
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(name="grafana")
    assert shown.startswith(token.prefix) and shown != token.prefix
    # Nothing carries it anywhere else: no cookie (decoded, as an attacker would), no message
    # waiting for the next page.
    for name, morsel in response.cookies.items():
        readable = str(CookieStorage(response.wsgi_request)._decode(morsel.value)) if name == "messages" else ""
        assert shown not in morsel.value and shown not in readable
    assert shown not in admin_client.get("/admin/api/apitoken/").content.decode()
    assert shown not in admin_client.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    # And it is the working key.
    assert client_with(shown).get("/api/health/").status_code == 200


def test_editing_a_token_shows_no_key(admin_client):
    user = get_user_model().objects.get(username="admin")
    admin_client.post("/admin/api/apitoken/add/", {"name": "bot", "user": user.pk, "scope": "read"})
    token = ApiToken.objects.get(name="bot")

    response = admin_client.post(f"/admin/api/apitoken/{token.pk}/change/", {"name": "bot-renamed"})

    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).name == "bot-renamed"
    assert ApiToken.objects.get(pk=token.pk).key_hash == token.key_hash
