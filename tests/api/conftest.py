"""API clients carrying a read or a control token."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tvtrader.api.services import api_token_create


@pytest.fixture
def api_user(db):
    return get_user_model().objects.create_user("ops-bot", password="x" * 20)


@pytest.fixture
def read_token(api_user):
    return api_token_create(user=api_user, scope="read", name="grafana")[1]


@pytest.fixture
def control_token(api_user):
    return api_token_create(user=api_user, scope="control", name="my-bot")[1]


def client_with(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def read_api(read_token):
    return client_with(read_token)


@pytest.fixture
def control_api(control_token):
    return client_with(control_token)
