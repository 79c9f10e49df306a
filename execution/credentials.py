"""Exchange credentials at rest: Fernet tokens under keys from the environment.

CREDENTIALS_ENCRYPTION_KEYS lists keys newest first (MultiFernet): new values are
encrypted with the first, any listed key decrypts, and `credentials_rotate` re-encrypts
every stored value under the newest key so an old key can then be removed.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsError(Exception):
    """A stored credential cannot be decrypted with any configured key."""


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.CREDENTIALS_ENCRYPTION_KEYS if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsError("cannot decrypt a stored credential with CREDENTIALS_ENCRYPTION_KEYS") from exc


def credentials_rotate() -> int:
    """Re-encrypt every account credential under the newest key. Returns fields rotated."""
    from .models import ExchangeAccount

    fernet = _fernet()
    rotated = 0
    for account in ExchangeAccount.objects.all():
        changed = []
        for field in ("api_key_enc", "api_secret_enc", "api_password_enc"):
            token = getattr(account, field)
            if token:
                setattr(account, field, fernet.rotate(token.encode()).decode())
                changed.append(field)
        if changed:
            account.save(update_fields=changed)
            rotated += len(changed)
    return rotated
