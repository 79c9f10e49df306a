"""`manage.py create_api_token USER --scope read|control [--name NAME] [--days N]`: print a new token."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tvtrader.api.models import ApiToken
from tvtrader.api.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USER and print it (it is stored hashed and shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("user", help="Username the token acts as (shown in the audit log).")
        parser.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.READ)
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument("--days", type=int, default=None, help="Refuse the token after this many days.")

    def handle(self, *args, user, scope, name, days, **options):
        User = get_user_model()
        try:
            owner = User.objects.get(**{User.USERNAME_FIELD: user})
        except User.DoesNotExist as exc:
            raise CommandError(f"no user named {user!r} (create one with createsuperuser)") from exc
        try:
            token, raw = api_token_create(user=owner, scope=scope, name=name, days=days)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        until = f", valid until {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
        self.stderr.write(f"Created {scope} token {token.name!r} for {user}{until}. It will not be shown again:")
        self.stdout.write(raw)
