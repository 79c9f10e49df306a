"""`manage.py create_api_token USER --scope read|control [--name NAME]`: print a new token."""

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

    def handle(self, *args, user, scope, name, **options):
        User = get_user_model()
        try:
            owner = User.objects.get(**{User.USERNAME_FIELD: user})
        except User.DoesNotExist as exc:
            raise CommandError(f"no user named {user!r} (create one with createsuperuser)") from exc
        token, raw = api_token_create(user=owner, scope=scope, name=name)
        self.stderr.write(f"Created {scope} token {token.name!r} for {user}. It will not be shown again:")
        self.stdout.write(raw)
