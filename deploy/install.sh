#!/usr/bin/env bash
# tvtrader installer: a fresh Debian 12 / Ubuntu 22.04+ VPS to HTTPS-protected trading.
#
#   sudo deploy/install.sh --domain bot.example.com --email you@example.com --operator-ips 203.0.113.7
#
# The admin, API and /metrics must be protected beyond a password: --operator-ips (nginx lets
# only those addresses reach them), --admin-2fa (the admin login asks for an authenticator
# code), or both. Without either the installer stops; --insecure-open-admin is the explicit,
# loudly reported way to run with neither.
#
# Idempotent: a second run with the same options changes nothing. Secrets are generated once
# and kept in /etc/tvtrader/tvtrader.env (mode 600); re-running never regenerates them. The
# options you pass are remembered in /etc/tvtrader/install.conf, so `deploy/install.sh` alone
# re-applies them (upgrade: new code in place, then run it again; see docs/deploy.md).
#
# --root DIR  writes every file under DIR instead of / and only prints the steps that need the
#             real system (apt, useradd, systemctl, certbot, createdb, migrate). The test suite
#             runs the installer this way, twice, and checks the second run changes nothing.
# --dry-run   the same into a temporary directory, which is printed at the end.
set -euo pipefail
shopt -s lastpipe # `... | render` and `render`'s own pipe update counters in this shell
umask 022

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNSET=__unset__

usage() {
    cat <<EOF
Usage: $0 [options]
  --domain NAME           public DNS name; obtains a Let's Encrypt certificate with certbot
  --email ADDRESS         for Let's Encrypt expiry notices (with --domain)
  --operator-ips LIST     comma-separated addresses allowed to reach the admin, API and
                          /metrics ("" clears a remembered list)
  --admin-2fa             require an authenticator code (TOTP) at admin login
                          (ADMIN_REQUIRE_2FA=true); enrols every superuser without one
  --no-admin-2fa          switch a remembered --admin-2fa off
  --insecure-open-admin   run without --operator-ips and without --admin-2fa: the admin is
                          reachable from the whole internet behind a password only
  --no-insecure-open-admin  withdraw a remembered --insecure-open-admin
  --extra-webhook-ips L   addresses allowed on /tv-webhook besides TradingView's (testing)
  --tv-client-ca FILE     verify TradingView's TLS client certificate against this CA bundle
  --public-ip ADDRESS     the address TradingView will call when there is no --domain
  --venv DIR              use this virtualenv instead of creating one per release
  --root DIR              throwaway root filesystem (see above)
  --dry-run               --root into a temporary directory
  -h, --help
EOF
}

ROOT=""
DRY_RUN=0
VENV_OVERRIDE=""
DOMAIN=$UNSET EMAIL=$UNSET OPERATOR_IPS=$UNSET EXTRA_WEBHOOK_IPS=$UNSET TV_CLIENT_CA=$UNSET PUBLIC_IP=$UNSET
ADMIN_2FA=$UNSET OPEN_ADMIN=$UNSET
while [[ $# -gt 0 ]]; do
    case "$1" in
        --domain) DOMAIN=$2; shift 2 ;;
        --email) EMAIL=$2; shift 2 ;;
        --operator-ips) OPERATOR_IPS=$2; shift 2 ;;
        --extra-webhook-ips) EXTRA_WEBHOOK_IPS=$2; shift 2 ;;
        --tv-client-ca) TV_CLIENT_CA=$2; shift 2 ;;
        --public-ip) PUBLIC_IP=$2; shift 2 ;;
        --admin-2fa) ADMIN_2FA=true; shift ;;
        --no-admin-2fa) ADMIN_2FA=false; shift ;;
        --insecure-open-admin) OPEN_ADMIN=true; shift ;;
        --no-insecure-open-admin) OPEN_ADMIN=false; shift ;;
        --venv) VENV_OVERRIDE=$2; shift 2 ;;
        --root) ROOT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ $DRY_RUN == 1 && -z $ROOT ]]; then
    ROOT=$(mktemp -d /tmp/tvtrader-dry-run.XXXXXX)
fi
if [[ -n $ROOT ]]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT != / ]] || { echo "--root / is the real system: run without --root" >&2; exit 2; }
fi

# --- Layout -------------------------------------------------------------------------------
APP_USER=tvtrader
PREFIX=/opt/tvtrader
ETC=/etc/tvtrader
ENV_FILE=$ETC/tvtrader.env
INSTALL_CONF=$ETC/install.conf
VAR_DIR=/var/lib/tvtrader
BACKUP_DIR=/var/backups/tvtrader
ACME_ROOT=/var/www/letsencrypt
SNIPPETS=/etc/nginx/snippets
SYSTEMD=/etc/systemd/system
KEEP_RELEASES=3
GUNICORN_BIND=127.0.0.1:8000

CHANGED=0          # files written this run
declare -A TOUCHED # which parts changed: app env units nginx redis

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# A path on the target system (under --root when given).
R() { printf '%s%s' "$ROOT" "$1"; }
real() { [[ -z $ROOT ]]; }
# Steps that change the real system: run them, or print them under --root. Printed shell-quoted
# (%q), so the line is exactly the command that runs (the tests parse certbot's this way).
sys() {
    local line
    printf -v line '%q ' "$@"
    if real; then
        printf '+ %s\n' "${line% }"
        "$@"
    else
        printf '[would run] %s\n' "${line% }"
    fi
}
note_changes() { # reads render.py output; counts and remembers what changed
    local part=$1 line
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        if [[ $line == changed* ]]; then
            CHANGED=$((CHANGED + 1))
            TOUCHED[$part]=1
            printf '    %s\n' "${line/"$ROOT"/}"
        fi
    done
}
# render PART TEMPLATE DEST MODE [KEY=VALUE...]   (TEMPLATE "-" reads stdin)
render() {
    local part=$1 template=$2 dest=$3 mode=$4
    shift 4
    [[ $template == - ]] || template=$SRC/deploy/templates/$template
    python3 "$SRC/deploy/render.py" "$template" "$(R "$dest")" --mode "$mode" "$@" | note_changes "$part"
}
ensure_dir() { # ensure_dir PATH MODE [OWNER]
    local path=$1 mode=$2 owner=${3:-}
    if [[ ! -d $(R "$path") ]]; then
        mkdir -p "$(R "$path")"
        CHANGED=$((CHANGED + 1))
        printf '    created %s\n' "$path"
    fi
    if [[ $(stat -c '%a' "$(R "$path")") != "${mode#0}" ]]; then
        chmod "$mode" "$(R "$path")"
        CHANGED=$((CHANGED + 1))
    fi
    if [[ -n $owner ]]; then
        if real; then
            [[ $(stat -c '%U:%G' "$path") == "$owner" ]] || chown "$owner" "$path"
        else
            printf '[would run] chown %s %s\n' "$owner" "$path"
        fi
    fi
}
set_owner() { # set_owner OWNER PATH: chown on the real system, printed under --root
    if real; then
        [[ $(stat -c '%U:%G' "$2") == "$1" ]] || chown "$1" "$2"
    else
        printf '[would run] chown %s %s\n' "$1" "$2"
    fi
}

# --- Remembered options -------------------------------------------------------------------
saved() { # saved KEY: value from install.conf, empty when absent
    local file
    file=$(R "$INSTALL_CONF")
    [[ -f $file ]] && sed -n "s/^$1=//p" "$file" | tail -n1 || true
}
for key in DOMAIN EMAIL OPERATOR_IPS EXTRA_WEBHOOK_IPS TV_CLIENT_CA PUBLIC_IP ADMIN_2FA OPEN_ADMIN; do
    if [[ ${!key} == "$UNSET" ]]; then
        printf -v "$key" '%s' "$(saved "$key")"
    fi
done
[[ $ADMIN_2FA == true ]] || ADMIN_2FA=false
[[ $OPEN_ADMIN == true ]] || OPEN_ADMIN=false
[[ -z $DOMAIN || $DOMAIN =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--domain: not a DNS name: $DOMAIN"
[[ -z $EMAIL || $EMAIL =~ ^[^[:space:]@]+@[^[:space:]@]+$ ]] || die "--email: not an address: $EMAIL"
check_ips() { # check_ips OPTION LIST: every entry an address or network, before anything changes
    python3 -c 'import ipaddress, sys
for v in filter(None, (x.strip() for x in sys.argv[2].split(","))):
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        sys.exit(f"install.sh: {sys.argv[1]}: {v!r} is not an IP address or network")' "$1" "$2"
}
check_ips --operator-ips "$OPERATOR_IPS"
check_ips --extra-webhook-ips "$EXTRA_WEBHOOK_IPS"
# Before anything changes: the console must be protected by more than a password.
OPERATOR_LIST=$(tr -d '[:space:],' <<<"$OPERATOR_IPS")
if [[ -z $OPERATOR_LIST && $ADMIN_2FA != true && $OPEN_ADMIN != true ]]; then
    die "the admin, the API and /metrics would be open to the whole internet behind a password only.
Choose at least one (both is best):
  --operator-ips YOUR.IP[,...]   nginx lets only these addresses reach /admin, /api and /metrics
  --admin-2fa                    the admin login also asks for an authenticator app code
Or, knowingly: --insecure-open-admin. See docs/deploy.md (Install)."
fi
open_admin_warning() { # printed at the start and again at the end of a run
    [[ -z $OPERATOR_LIST && $ADMIN_2FA != true ]] || return 0
    printf '\n%s\n%s\n%s\n\n' \
        '!!! WARNING (--insecure-open-admin): no --operator-ips and no --admin-2fa. The admin and' \
        '!!! the API are open to the whole internet behind a password only. Re-run with' \
        '!!! --operator-ips YOUR.IP and/or --admin-2fa (docs/deploy.md).' >&2
}
open_admin_warning
if [[ -n $TV_CLIENT_CA ]]; then
    [[ -f $TV_CLIENT_CA ]] || die "--tv-client-ca: no such file: $TV_CLIENT_CA"
    TV_CLIENT_CA=$(cd "$(dirname "$TV_CLIENT_CA")" && pwd)/$(basename "$TV_CLIENT_CA")
fi
if [[ -z $PUBLIC_IP && -z $DOMAIN ]]; then
    PUBLIC_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
    PUBLIC_IP=${PUBLIC_IP:-127.0.0.1}
fi
[[ $PUBLIC_IP =~ ^[0-9A-Fa-f.:]*$ ]] || die "--public-ip: not an address: $PUBLIC_IP"

# --- 1. Preflight -------------------------------------------------------------------------
if real; then
    [[ $EUID -eq 0 ]] || die "run as root (sudo), or use --root DIR / --dry-run to try it out"
    # shellcheck disable=SC1091
    . /etc/os-release
    case "$ID:${VERSION_ID:-0}" in
        debian:1[2-9]* | ubuntu:2[2-9].* | ubuntu:[3-9]*) ;;
        *) die "supported: Debian 12+ and Ubuntu 22.04+ (this is $PRETTY_NAME)" ;;
    esac
else
    say "throwaway root: $ROOT (system commands are printed, not run)"
fi

# --- 2. Packages --------------------------------------------------------------------------
say "distribution packages"
PACKAGES=(python3 python3-venv postgresql redis-server nginx openssl ufw ca-certificates)
[[ -z $DOMAIN ]] || PACKAGES+=(certbot)
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    # Ubuntu 22.04 ships 3.10; its 3.11 is in the main archive as python3.11.
    PYTHON=python3.11
    PACKAGES+=(python3.11 python3.11-venv)
fi
if real; then
    missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        sys env DEBIAN_FRONTEND=noninteractive apt-get update -q
        sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
else
    printf '[would run] apt-get install -y (those missing of) %s\n' "${PACKAGES[*]}"
fi

# --- 3. System user and directories --------------------------------------------------------
say "system user and directories"
if real; then
    id -u "$APP_USER" >/dev/null 2>&1 ||
        sys useradd --system --home-dir "$PREFIX" --no-create-home --shell /usr/sbin/nologin "$APP_USER"
else
    printf '[would run] useradd --system --home-dir %s --shell /usr/sbin/nologin %s (if missing)\n' "$PREFIX" "$APP_USER"
fi
ensure_dir "$PREFIX" 0755 root:root
ensure_dir "$PREFIX/releases" 0755 root:root
ensure_dir "$ETC" 0750 root:root
ensure_dir "$VAR_DIR" 0750 "$APP_USER:$APP_USER"
ensure_dir "$BACKUP_DIR" 0700 "$APP_USER:$APP_USER"
ensure_dir "$ACME_ROOT" 0755 root:root
ensure_dir "$ETC/tls" 0750 root:root

# --- 4. The release: code, virtualenv -------------------------------------------------------
say "release"
source_files() { # the files that make a release, NUL-separated, stable order
    (cd "$SRC" && find . \( -name .git -o -name .venv -o -name var -o -name staticfiles -o -name __pycache__ \
        -o -name .pytest_cache -o -name .ruff_cache -o -name node_modules \) -prune -o -type f ! -name '*.pyc' -print0 |
        LC_ALL=C sort -z)
}
RELEASE_ID=$(source_files | (cd "$SRC" && xargs -0 sha256sum) | sha256sum | cut -c1-12)
RELEASE=$PREFIX/releases/$RELEASE_ID
if [[ ! -d $(R "$RELEASE") ]]; then
    mkdir -p "$(R "$RELEASE").partial"
    # A checkout's .env (settings read it beside manage.py) holds secrets: never copied with
    # its own mode, written below at 600 for the service user instead.
    source_files | grep -zvx '\./\.env' | (cd "$SRC" && tar --null -T - -cf -) | tar -xf - -C "$(R "$RELEASE").partial"
    if [[ -f $SRC/.env ]]; then
        python3 "$SRC/deploy/render.py" - "$(R "$RELEASE").partial/.env" --mode 0600 <"$SRC/.env" >/dev/null
    fi
    mv "$(R "$RELEASE").partial" "$(R "$RELEASE")"
    CHANGED=$((CHANGED + 1))
    TOUCHED[app]=1
    printf '    created %s\n' "$RELEASE"
fi
if [[ -f $(R "$RELEASE/.env") ]]; then
    # Also on every re-run: a release made by an older installer kept the checkout's mode.
    if [[ $(stat -c '%a' "$(R "$RELEASE/.env")") != 600 ]]; then
        chmod 600 "$(R "$RELEASE/.env")"
        CHANGED=$((CHANGED + 1))
        printf '    mode 600 %s\n' "$RELEASE/.env"
    fi
    set_owner "$APP_USER:$APP_USER" "$RELEASE/.env"
fi
if [[ -n $VENV_OVERRIDE ]]; then
    VENV=$(cd "$VENV_OVERRIDE" && pwd)
    [[ -x $VENV/bin/python ]] || die "--venv: no $VENV/bin/python"
else
    VENV=$RELEASE/.venv
fi
REQ_HASH=$(sha256sum "$SRC/requirements.lock" | cut -c1-64)
if real; then
    if [[ ! -x $VENV/bin/python ]]; then
        sys "$PYTHON" -m venv "$VENV"
    fi
    if [[ $(cat "$VENV/.tvtrader-requirements" 2>/dev/null) != "$REQ_HASH" ]]; then
        sys "$VENV/bin/pip" install -q --upgrade pip
        sys "$VENV/bin/pip" install -q --require-hashes -r "$RELEASE/requirements.lock"
        echo "$REQ_HASH" >"$VENV/.tvtrader-requirements"
        TOUCHED[app]=1
        sys "$VENV/bin/python" -m compileall -q "$RELEASE"
    fi
else
    [[ -x $VENV/bin/python ]] || printf '[would run] %s -m venv %s\n' "$PYTHON" "$VENV"
    printf '[would run] %s/bin/pip install --require-hashes -r %s/requirements.lock (when it changed)\n' "$VENV" "$RELEASE"
fi
# The venv python runs manage.py; under --root without --venv there is none, and the steps
# that need it are printed instead.
HAVE_PY=0
[[ -x $VENV/bin/python ]] && HAVE_PY=1

# --- 5. Secrets and the environment file ---------------------------------------------------
say "environment file $ENV_FILE"
existing() { # existing KEY: the value already in the env file (secrets are never regenerated)
    local file
    file=$(R "$ENV_FILE")
    [[ -f $file ]] && sed -n "s/^$1=//p" "$file" | tail -n1 || true
}
secret() { # secret KEY GENERATOR-PYTHON
    local value
    value=$(existing "$1")
    if [[ -z $value ]]; then
        value=$(python3 -c "import secrets, base64, os; print($2)")
    fi
    printf '%s' "$value"
}
SECRET_KEY=$(secret SECRET_KEY 'secrets.token_urlsafe(50)')
WEBHOOK_PASSPHRASE=$(secret WEBHOOK_PASSPHRASE 'secrets.token_urlsafe(24)')
REDIS_PASSWORD=$(secret REDIS_PASSWORD 'secrets.token_hex(32)')
CREDENTIALS_ENCRYPTION_KEYS=$(existing CREDENTIALS_ENCRYPTION_KEYS)
if [[ -z $CREDENTIALS_ENCRYPTION_KEYS ]]; then
    if ((HAVE_PY)); then
        CREDENTIALS_ENCRYPTION_KEYS=$("$VENV/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
    else
        # Exactly what Fernet.generate_key() returns (32 random bytes, urlsafe base64).
        CREDENTIALS_ENCRYPTION_KEYS=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
    fi
fi
# What an operator switches by editing the file survives a re-run (the documented upgrade):
# live trading, the worker's size, and any setting they added by hand.
LIVE_TRADING=$(existing LIVE_TRADING)
LIVE_TRADING=${LIVE_TRADING:-false}
WORKER_CONCURRENCY=$(existing WORKER_CONCURRENCY)
# 64 was this installer's own earlier default (not an operator's choice): now 22, within the
# stack's 30 database connections (docs/execution.md, "Worker pool").
[[ -n $WORKER_CONCURRENCY && $WORKER_CONCURRENCY != 64 ]] || WORKER_CONCURRENCY=22
INSTALLER_KEYS="DJANGO_SETTINGS_MODULE DEBUG SECRET_KEY ALLOWED_HOSTS CSRF_TRUSTED_ORIGINS DATABASE_URL
REDIS_PASSWORD REDIS_URL TVTRADER_VAR_DIR STATIC_ROOT GUNICORN_BIND WEBHOOK_PASSPHRASE
WEBHOOK_IP_ALLOWLIST_ENABLED WEBHOOK_EXTRA_ALLOWED_IPS TRUSTED_PROXIES BEHIND_TLS_PROXY SECURE_SSL_REDIRECT
SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_HSTS_SECONDS SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD
SILENCED_SYSTEM_CHECKS ADMIN_REQUIRE_2FA LIVE_TRADING CREDENTIALS_ENCRYPTION_KEYS WORKER_CONCURRENCY WORKER_QUEUES"
operator_lines() { # the previous file's settings this installer does not write: kept as they were
    local file
    file=$(R "$ENV_FILE")
    [[ -f $file ]] || return 0
    python3 - "$file" $INSTALLER_KEYS <<'PY'
import re, sys
known = set(sys.argv[2:])
lines = [ln for ln in open(sys.argv[1], encoding="utf-8").read().splitlines()
         if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", ln) and ln.split("=", 1)[0] not in known]
if lines:
    print("\n# Added by hand (kept by deploy/install.sh on every re-run):")
    print("\n".join(lines))
PY
}
OPERATOR_LINES=$(operator_lines)
HOSTNAME_FOR_TV=${DOMAIN:-$PUBLIC_IP}
ALLOWED_HOSTS=$HOSTNAME_FOR_TV,127.0.0.1,localhost
CSRF_TRUSTED_ORIGINS=""
[[ -z $DOMAIN ]] || CSRF_TRUSTED_ORIGINS=https://$DOMAIN
render env - "$ENV_FILE" 0600 <<EOF
# tvtrader production environment, written by deploy/install.sh. Mode 600, root only:
# systemd reads it before dropping to the $APP_USER user. Secrets below were generated on
# the first install and are kept on every re-run; see docs/deploy.md to rotate them.
DJANGO_SETTINGS_MODULE=tvtrader.settings
DEBUG=false
SECRET_KEY=$SECRET_KEY
ALLOWED_HOSTS=$ALLOWED_HOSTS
CSRF_TRUSTED_ORIGINS=$CSRF_TRUSTED_ORIGINS
# Peer authentication over the local socket: the $APP_USER role needs no password.
DATABASE_URL=postgres:///tvtrader
REDIS_PASSWORD=$REDIS_PASSWORD
REDIS_URL=redis://:$REDIS_PASSWORD@127.0.0.1:6379/0
TVTRADER_VAR_DIR=$VAR_DIR
STATIC_ROOT=$PREFIX/current/staticfiles
GUNICORN_BIND=$GUNICORN_BIND

# The webhook: global passphrase, source addresses (nginx enforces the same list).
WEBHOOK_PASSPHRASE=$WEBHOOK_PASSPHRASE
WEBHOOK_IP_ALLOWLIST_ENABLED=true
WEBHOOK_EXTRA_ALLOWED_IPS=$EXTRA_WEBHOOK_IPS

# nginx on this host is the only proxy trusted with X-Forwarded-For / X-Forwarded-Proto.
TRUSTED_PROXIES=127.0.0.1
BEHIND_TLS_PROXY=true
SECURE_SSL_REDIRECT=true
SESSION_COOKIE_SECURE=true
CSRF_COOKIE_SECURE=true
SECURE_HSTS_SECONDS=31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS=true
# HSTS preload is a separate, hard-to-undo decision for the domain's owner (hstspreload.org);
# the header does not claim it, so Django's reminder about it is silenced.
SECURE_HSTS_PRELOAD=false
SILENCED_SYSTEM_CHECKS=security.W021

# Second factor at admin login (deploy/install.sh --admin-2fa; enrol: manage.py admin_otp_enrol).
ADMIN_REQUIRE_2FA=$ADMIN_2FA

# Live trading stays off until you switch it on here and restart (systemctl restart tvtrader.target);
# a re-run of the installer keeps what you set.
LIVE_TRADING=$LIVE_TRADING
# Fernet keys for exchange credentials at rest, newest first (rotation: docs/deploy.md).
CREDENTIALS_ENCRYPTION_KEYS=$CREDENTIALS_ENCRYPTION_KEYS

WORKER_CONCURRENCY=$WORKER_CONCURRENCY
WORKER_QUEUES=orders,default
$OPERATOR_LINES
EOF
render env - "$INSTALL_CONF" 0600 <<EOF
# Options deploy/install.sh was last run with; a re-run without options re-applies them.
DOMAIN=$DOMAIN
EMAIL=$EMAIL
OPERATOR_IPS=$OPERATOR_IPS
EXTRA_WEBHOOK_IPS=$EXTRA_WEBHOOK_IPS
TV_CLIENT_CA=$TV_CLIENT_CA
PUBLIC_IP=$PUBLIC_IP
ADMIN_2FA=$ADMIN_2FA
OPEN_ADMIN=$OPEN_ADMIN
EOF

# manage.py with the production environment. As the app user on the real system; under --root
# only commands that touch neither the database nor real paths run (VAR_DIR/STATIC_ROOT are
# redirected into the throwaway root).
manage() {
    (
        set -a
        # shellcheck disable=SC1090
        . "$(R "$ENV_FILE")"
        set +a
        cd "$(R "$RELEASE")"
        if real; then
            exec setpriv --reuid="$APP_USER" --regid="$APP_USER" --init-groups -- "$VENV/bin/python" manage.py "$@"
        else
            export TVTRADER_VAR_DIR=$ROOT$VAR_DIR STATIC_ROOT=$ROOT$RELEASE/staticfiles
            exec "$VENV/bin/python" manage.py "$@"
        fi
    )
}

# --- 6. Redis: localhost, password, AOF persistence, no eviction ----------------------------
say "redis"
render redis redis-tvtrader.conf /etc/redis/tvtrader.conf 0640 REDIS_PASSWORD="$REDIS_PASSWORD"
set_owner root:redis /etc/redis/tvtrader.conf
REDIS_MAIN=$(R /etc/redis/redis.conf)
if ! grep -qxF 'include /etc/redis/tvtrader.conf' "$REDIS_MAIN" 2>/dev/null; then
    mkdir -p "$(dirname "$REDIS_MAIN")"
    # Last so its settings win over the distribution's defaults.
    printf '\n# tvtrader (deploy/install.sh)\ninclude /etc/redis/tvtrader.conf\n' >>"$REDIS_MAIN"
    CHANGED=$((CHANGED + 1))
    TOUCHED[redis]=1
    printf '    changed %s\n' /etc/redis/redis.conf
fi
[[ -z ${TOUCHED[redis]:-} ]] || sys systemctl restart redis-server

# --- 7. PostgreSQL: role and database (peer authentication) ---------------------------------
say "postgresql"
if real; then
    if [[ $(runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='$APP_USER'") != 1 ]]; then
        sys runuser -u postgres -- createuser "$APP_USER"
    fi
    if [[ $(runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname='tvtrader'") != 1 ]]; then
        sys runuser -u postgres -- createdb -O "$APP_USER" tvtrader
    fi
else
    printf '[would run] runuser -u postgres -- createuser %s (if missing)\n' "$APP_USER"
    printf '[would run] runuser -u postgres -- createdb -O %s tvtrader (if missing)\n' "$APP_USER"
fi

# --- 8. Django: migrate, static files, deployment checks ------------------------------------
say "django"
if real; then
    ensure_dir "$RELEASE/staticfiles" 0755 "$APP_USER:$APP_USER"
    manage migrate --noinput
    manage collectstatic --noinput -v 0
    manage bootstrap
    if [[ $ADMIN_2FA == true ]]; then
        # Every active superuser without an authenticator gets one now, printed once: with
        # ADMIN_REQUIRE_2FA on, a login without one could no longer get in.
        LOGINS=$(manage shell -v 0 -c 'from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice
for u in get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk"):
    if not TOTPDevice.objects.filter(user=u, confirmed=True).exists():
        print(u.username)')
        for login in $LOGINS; do # Django user names hold no spaces
            manage admin_otp_enrol "$login"
        done
    fi
elif ((HAVE_PY)); then
    printf '[would run] manage.py migrate --noinput; manage.py bootstrap\n'
    [[ $ADMIN_2FA != true ]] || printf '[would run] manage.py admin_otp_enrol LOGIN (each superuser without an authenticator)\n'
    manage collectstatic --noinput -v 0
else
    printf '[would run] manage.py migrate, collectstatic, bootstrap\n'
fi
# Refuses to go on with a production setting Django calls unsafe.
if ((HAVE_PY)); then
    manage check --deploy --fail-level WARNING
fi
# Switch to the new release only once it is migrated and checked.
CURRENT=$(R "$PREFIX/current")
if [[ $(readlink "$CURRENT" 2>/dev/null) != "releases/$RELEASE_ID" ]]; then
    ln -sfn "releases/$RELEASE_ID" "$CURRENT.new"
    mv -T "$CURRENT.new" "$CURRENT"
    CHANGED=$((CHANGED + 1))
    TOUCHED[app]=1
    printf '    current -> releases/%s\n' "$RELEASE_ID"
fi
# Keep the newest few releases for rollback (docs/deploy.md); never the current one.
mapfile -t OLD < <(cd "$(R "$PREFIX/releases")" && ls -1t | grep -vxF "$RELEASE_ID" | grep -v '\.partial$' | tail -n +"$KEEP_RELEASES")
for old in "${OLD[@]}"; do
    rm -rf "$(R "$PREFIX/releases/$old")"
    CHANGED=$((CHANGED + 1))
    printf '    pruned release %s\n' "$old"
done

# --- 9. TLS certificate -------------------------------------------------------------------
say "tls"
SELF_CERT=$ETC/tls/selfsigned.crt
SELF_KEY=$ETC/tls/selfsigned.key
if [[ ! -f $(R "$SELF_KEY") ]]; then
    # Lets nginx start before Let's Encrypt has issued (and is the certificate without --domain).
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=${HOSTNAME_FOR_TV}" \
        -keyout "$(R "$SELF_KEY").tmp" -out "$(R "$SELF_CERT")" 2>/dev/null
    chmod 600 "$(R "$SELF_KEY").tmp"
    mv "$(R "$SELF_KEY").tmp" "$(R "$SELF_KEY")"
    CHANGED=$((CHANGED + 1))
    TOUCHED[nginx]=1
    printf '    created %s\n' "$SELF_CERT"
fi
SSL_CERT=$SELF_CERT SSL_KEY=$SELF_KEY
LE_LIVE=/etc/letsencrypt/live/$DOMAIN
if [[ -n $DOMAIN && -f $(R "$LE_LIVE/fullchain.pem") ]]; then
    SSL_CERT=$LE_LIVE/fullchain.pem SSL_KEY=$LE_LIVE/privkey.pem
fi

# --- 10. nginx ----------------------------------------------------------------------------
say "nginx"
manage_or_print() { # the allowlists need the app's settings: generated by the app itself
    if ((HAVE_PY)); then
        manage render_nginx_allowlist "$@"
    else
        printf '# [would be generated by] manage.py render_nginx_allowlist %s\ndeny all;\n' "$*"
    fi
}
manage_or_print | render nginx - "$SNIPPETS/tvtrader-webhook-allow.conf" 0644
manage_or_print --operator-ips "$OPERATOR_IPS" | render nginx - "$SNIPPETS/tvtrader-operator-allow.conf" 0644
if [[ -n $TV_CLIENT_CA ]]; then
    render nginx - "$ETC/tradingview-client-ca.pem" 0644 <"$TV_CLIENT_CA"
    render nginx nginx-mtls-server.conf "$SNIPPETS/tvtrader-mtls-server.conf" 0644 CLIENT_CA="$ETC/tradingview-client-ca.pem"
    render nginx nginx-mtls-location.conf "$SNIPPETS/tvtrader-mtls-location.conf" 0644
else
    render nginx nginx-mtls-off.conf "$SNIPPETS/tvtrader-mtls-server.conf" 0644
    render nginx nginx-mtls-off.conf "$SNIPPETS/tvtrader-mtls-location.conf" 0644
fi
render_site() {
    render nginx nginx-site.conf /etc/nginx/sites-available/tvtrader.conf 0644 \
        UPSTREAM="$GUNICORN_BIND" HTTP_LISTEN=80 HTTPS_LISTEN=443 SERVER_NAME="${DOMAIN:-_}" \
        SSL_CERT="$SSL_CERT" SSL_KEY="$SSL_KEY" ACME_ROOT="$ACME_ROOT" SNIPPETS="$SNIPPETS"
}
render_site
if [[ $(readlink "$(R /etc/nginx/sites-enabled/tvtrader.conf)" 2>/dev/null) != /etc/nginx/sites-available/tvtrader.conf ]]; then
    mkdir -p "$(R /etc/nginx/sites-enabled)"
    ln -sfn /etc/nginx/sites-available/tvtrader.conf "$(R /etc/nginx/sites-enabled/tvtrader.conf)"
    CHANGED=$((CHANGED + 1))
    TOUCHED[nginx]=1
fi
if [[ -L $(R /etc/nginx/sites-enabled/default) ]]; then
    rm -f "$(R /etc/nginx/sites-enabled/default)"
    CHANGED=$((CHANGED + 1))
    TOUCHED[nginx]=1
fi
if [[ -n ${TOUCHED[nginx]:-} ]]; then
    sys nginx -t
    sys systemctl reload-or-restart nginx
fi
if [[ -n $DOMAIN && $SSL_CERT == "$SELF_CERT" ]]; then
    CERTBOT=(certbot certonly --webroot -w "$ACME_ROOT" -d "$DOMAIN" --non-interactive --agree-tos)
    if [[ -n $EMAIL ]]; then
        CERTBOT+=(--email "$EMAIL")
    else
        CERTBOT+=(--register-unsafely-without-email)
    fi
    sys "${CERTBOT[@]}"
    if real && [[ -f $LE_LIVE/fullchain.pem ]]; then
        SSL_CERT=$LE_LIVE/fullchain.pem SSL_KEY=$LE_LIVE/privkey.pem
        render_site
        sys nginx -t
        sys systemctl reload nginx
    fi
fi
if [[ -n $DOMAIN ]]; then
    # certbot's own timer renews; nginx must reload to serve the renewed certificate.
    render nginx - /etc/letsencrypt/renewal-hooks/deploy/tvtrader-reload-nginx 0755 <<'EOF'
#!/bin/sh
# Installed by tvtrader deploy/install.sh: serve the renewed certificate.
exec systemctl reload nginx
EOF
fi

# --- 11. systemd units --------------------------------------------------------------------
say "systemd units"
UNIT_VALUES=(USER="$APP_USER" GROUP="$APP_USER" APP_DIR="$PREFIX/current" VENV_BIN="$VENV/bin"
    ENV_FILE="$ENV_FILE" VAR_DIR="$VAR_DIR" BACKUP_DIR="$BACKUP_DIR" LISTEN="$GUNICORN_BIND")
if [[ -z $VENV_OVERRIDE ]]; then
    UNIT_VALUES+=(VENV_BIN="$PREFIX/current/.venv/bin") # follows the release being switched
fi
for unit in tvtrader-web.socket tvtrader-web.service tvtrader-worker.service tvtrader-beat.service \
    tvtrader.target tvtrader-backup.service tvtrader-backup.timer; do
    render units "$unit" "$SYSTEMD/$unit" 0644 "${UNIT_VALUES[@]}"
done
if [[ -n ${TOUCHED[units]:-} ]]; then
    sys systemctl daemon-reload
fi
if real; then
    for unit in tvtrader.target tvtrader-web.socket tvtrader-web.service tvtrader-worker.service tvtrader-beat.service \
        tvtrader-backup.timer; do
        systemctl is-enabled --quiet "$unit" 2>/dev/null || sys systemctl enable "$unit"
    done
else
    printf '[would run] systemctl enable tvtrader.target tvtrader-web.socket tvtrader-{web,worker,beat}.service tvtrader-backup.timer (if not enabled)\n'
fi
if [[ -n ${TOUCHED[app]:-}${TOUCHED[env]:-}${TOUCHED[units]:-} ]]; then
    # Worker stop is a warm shutdown: running orders finish first (TimeoutStopSec).
    sys systemctl restart tvtrader.target
    sys systemctl start tvtrader-backup.timer
else
    real && sys systemctl start tvtrader.target tvtrader-backup.timer
fi

# --- 12. What to paste into TradingView ------------------------------------------------------
if [[ -n $DOMAIN ]]; then
    URL=https://$DOMAIN/tv-webhook
else
    URL=https://$PUBLIC_IP/tv-webhook
fi
# The message comes from the app's one generator (signals/alert_message.py), with this
# install's passphrase in it: the same text the README, the docs and the strategy page show.
if ((HAVE_PY)); then
    ALERT_MESSAGE=$(manage alert_template --offline --strategy demo --passphrase="$WEBHOOK_PASSPHRASE" | sed 's/^/      /')
else
    ALERT_MESSAGE="      (print it with: manage.py alert_template --offline --strategy demo --passphrase ...)"
fi
cat <<EOF

==> done: $CHANGED change(s) this run${ROOT:+ (throwaway root $ROOT)}.

  TradingView alert → Notifications → Webhook URL:
      $URL
  Alert message for the demo strategy (a Pine strategy alert; each strategy's page in the
  admin shows its own, and an indicator variant):
$ALERT_MESSAGE
  Secrets and settings: $ENV_FILE (root only). Admin: https://$HOSTNAME_FOR_TV/admin/
  (first login printed above by "bootstrap", also in $VAR_DIR/admin_password).
  Firewall (SSH stays open): deploy/firewall.sh --help
EOF
if [[ -z $DOMAIN ]]; then
    echo "  WARNING: no --domain, so the certificate is self-signed; TradingView needs a valid one."
fi
open_admin_warning
