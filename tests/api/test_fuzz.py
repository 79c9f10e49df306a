"""Schemathesis against the API's own OpenAPI schema, in-process over WSGI: no generated
input produces a 5xx, and every operation refuses a missing or wrong token."""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from tests.factories import StrategyFactory

from .conftest import client_with


@pytest.fixture
def api_schema(db, control_token):
    from tvtrader.wsgi import application

    # Something for the generated ids to find now and then.
    StrategyFactory(strategy_id="demo")
    # As Django's own test client does: the test's connection (and its transaction) must
    # survive the end of each in-process request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/schema/?format=json", application, headers={"Authorization": f"Bearer {control_token}"}
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Each operation gets this many generated requests (positive and negative inputs): about
# 25 operations x 25 examples stays within a minute or two on two shared cores. Driven by
# Hypothesis directly: schemathesis.pytest's fixture integration does not run on pytest 9.
MAX_EXAMPLES = 25


def test_no_input_produces_a_server_error(api_schema, control_token):
    headers = {"Authorization": f"Bearer {control_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    calls = []
    for operation in operations:
        # Inputs that fit the schema, and inputs that break it (wrong types, bad enums, junk).
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @given(case=cases)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call(headers=headers)
            calls.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        fuzz()
    assert len(calls) >= len(operations) * 10
    assert any(400 <= code < 500 for code in calls) and any(code < 300 for code in calls)


@pytest.mark.django_db
def test_every_operation_refuses_a_missing_or_wrong_token(read_token):
    spec = client_with(read_token).get("/api/schema/?format=json").json()
    operations = [
        (method, re.sub(r"\{[^}]+\}", "1", path))
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 20
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer tvt_wrong"}, {"HTTP_AUTHORIZATION": "Basic YTpi"}):
        client = Client(**headers)
        for method, path in operations:
            response = getattr(client, method)(path, {}, content_type="application/json")
            assert response.status_code == 401, (method, path, headers, response.status_code)
    # And every operation declares that it needs the token.
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert {"apiToken": []} in operation.get("security", []), (method, path)
