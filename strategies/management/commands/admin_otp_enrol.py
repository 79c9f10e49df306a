"""Enrol an authenticator app (TOTP) for an admin login, for ADMIN_REQUIRE_2FA=true."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a TOTP device for an admin user and print the otpauth:// URL (and secret) to add to an "
        "authenticator app. Run it before switching ADMIN_REQUIRE_2FA on."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="A label for the device (e.g. 'phone').")
        parser.add_argument(
            "--replace", action="store_true", help="Delete this user's existing TOTP devices first (lost phone)."
        )

    def handle(self, *args, username: str, name: str, replace: bool, **options):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if replace:
            TOTPDevice.objects.filter(user=user).delete()
        elif TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise CommandError(f"{username} already has a TOTP device; pass --replace to enrol a new one")
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        import base64

        secret = base64.b32encode(device.bin_key).decode().rstrip("=")
        self.stdout.write(f"TOTP device '{name}' created for {username}.")
        self.stdout.write("Add it to your authenticator app with this URL (or scan it as a QR code):")
        self.stdout.write(f"  {device.config_url}")
        self.stdout.write(f"Or type the secret by hand: {secret}")
        self.stdout.write("The admin login then asks for the 6-digit code when ADMIN_REQUIRE_2FA=true.")
