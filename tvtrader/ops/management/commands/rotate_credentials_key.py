"""`manage.py rotate_credentials_key`: re-encrypt every stored secret under the newest key
of CREDENTIALS_ENCRYPTION_KEYS, so an older key can then be removed."""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from execution.credentials import CredentialsError, _fernet, credentials_rotate
from tvtrader.ops.models import NotificationTarget


class Command(BaseCommand):
    help = "Re-encrypt exchange credentials (and notification webhook URLs) under the newest key."

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                rotated = credentials_rotate()
                fernet = _fernet()
                for target in NotificationTarget.objects.exclude(discord_webhook_url_enc=""):
                    target.discord_webhook_url_enc = fernet.rotate(target.discord_webhook_url_enc.encode()).decode()
                    target.save(update_fields=["discord_webhook_url_enc"])
                    rotated += 1
        except (InvalidToken, CredentialsError):
            raise CommandError(
                "a stored secret does not decrypt with any key in CREDENTIALS_ENCRYPTION_KEYS; "
                "keep the old key in the list (newest first) until rotation succeeds. Nothing was changed."
            ) from None
        self.stdout.write(
            f"Re-encrypted {rotated} stored secret(s) under the newest key. "
            "Older keys can now be removed from CREDENTIALS_ENCRYPTION_KEYS."
        )
