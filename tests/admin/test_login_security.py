"""Admin login: lockout after repeated failures keyed on the real peer address, and the
optional second factor."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("boss", "", "a-long-good-password")


def _login(client, password, addr="203.0.113.7", **extra):
    return client.post(LOGIN, {"username": "boss", "password": password, "next": "/admin/"}, REMOTE_ADDR=addr, **extra)


def test_repeated_failed_logins_lock_the_address_out_even_with_the_right_password(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "wrong").status_code == 200  # the form again, with an error
    assert _login(client, "wrong").status_code == 429
    locked = _login(client, "a-long-good-password")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # Another address is not affected.
    assert _login(client, "a-long-good-password", addr="198.51.100.9").status_code == 302


def test_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_lockout(client, staff, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
    assert _login(client, "a-long-good-password", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_successful_login_reaches_the_dashboard(client, staff):
    response = _login(client, "a-long-good-password")
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


@override_settings(ADMIN_REQUIRE_2FA=True)
def test_with_2fa_required_a_password_alone_does_not_open_the_admin(client, staff):
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


@override_settings(ADMIN_REQUIRE_2FA=True)
def test_with_2fa_an_enrolled_totp_code_opens_the_admin(client, staff, capsys):
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from strategies.admin_site import ConsoleAdminSite

    call_command("admin_otp_enrol", "boss", "--name", "phone")
    out = capsys.readouterr().out
    assert "otpauth://totp/" in out
    device = TOTPDevice.objects.get(user=staff)
    # The site picks its login form when it is built; build one as the server would.
    site = ConsoleAdminSite(name="otp-check")
    from django_otp.admin import OTPAdminAuthenticationForm

    assert site.login_form is OTPAdminAuthenticationForm
    from django.test import RequestFactory

    password_only = site.login_form(
        RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.8"),
        data={"username": "boss", "password": "a-long-good-password"},
    )
    assert not password_only.is_valid()
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.8")
    token = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    form = site.login_form(
        request,
        data={
            "username": "boss",
            "password": "a-long-good-password",
            "otp_device": device.persistent_id,
            "otp_token": token,
        },
    )
    assert form.is_valid(), form.errors
    # A wrong code (or the same code replayed) is refused.
    wrong = f"{(int(token) + 1) % 1_000_000:06d}"
    form = site.login_form(
        RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.8"),
        data={
            "username": "boss",
            "password": "a-long-good-password",
            "otp_device": device.persistent_id,
            "otp_token": wrong,
        },
    )
    assert not form.is_valid()
