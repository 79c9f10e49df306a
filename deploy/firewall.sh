#!/usr/bin/env bash
# Host firewall (ufw) as the seed article advises: SSH stays open, 80 for Let's Encrypt and
# the HTTPS redirect, 443 for TradingView. Everything else inbound is refused.
#
#   deploy/firewall.sh [--restrict-443] [--operator-ips LIST] [--ssh-port 22] [--dry-run]
#
# --restrict-443  open 443 only to TradingView's webhook addresses (+ WEBHOOK_EXTRA_ALLOWED_IPS)
#                 and the --operator-ips; the admin is then reachable only from those.
#                 The address list comes from the app (manage.py render_nginx_allowlist), the
#                 same one nginx and the app enforce. Re-run after TradingView changes it.
# SSH is allowed before the firewall is enabled, so this cannot lock you out of the box.
set -euo pipefail
RESTRICT=0
OPERATOR_IPS=""
SSH_PORT=22
DRY_RUN=0
APP_DIR=${APP_DIR:-/opt/tvtrader/current}
ENV_FILE=${ENV_FILE:-/etc/tvtrader/tvtrader.env}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --restrict-443) RESTRICT=1; shift ;;
        --operator-ips) OPERATOR_IPS=$2; shift 2 ;;
        --ssh-port) SSH_PORT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "firewall.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $SSH_PORT =~ ^[0-9]+$ ]] || { echo "firewall.sh: --ssh-port must be a number" >&2; exit 2; }
ufw_() {
    if ((DRY_RUN)); then
        printf 'ufw %s\n' "$*"
    else
        ufw "$@"
    fi
}
app_ips() { # the webhook allowlist as plain addresses, from the app's settings
    local python=${PYTHON:-$APP_DIR/.venv/bin/python}
    (
        if [[ -r $ENV_FILE ]]; then
            set -a
            # shellcheck disable=SC1090
            . "$ENV_FILE"
            set +a
        fi
        cd "$APP_DIR"
        "$python" manage.py render_nginx_allowlist --format plain "$@"
    )
}
if ((RESTRICT)); then
    mapfile -t SOURCES < <(app_ips)
    mapfile -t OPS < <(app_ips --operator-ips "$OPERATOR_IPS")
    SOURCES+=("${OPS[@]}")
    ((${#SOURCES[@]})) || { echo "firewall.sh: empty address list; refusing to close 443" >&2; exit 1; }
fi
ufw_ default deny incoming
ufw_ default allow outgoing
# First, so enabling the firewall never cuts the SSH session it runs in. `limit` slows brute force.
ufw_ limit "$SSH_PORT/tcp" comment "ssh"
ufw_ allow 80/tcp comment "tvtrader: Let's Encrypt + redirect"
if ((RESTRICT)); then
    ufw_ delete allow 443/tcp >/dev/null 2>&1 || true
    for src in "${SOURCES[@]}"; do
        ufw_ allow from "$src" to any port 443 proto tcp comment "tvtrader: 443"
    done
else
    ufw_ allow 443/tcp comment "tvtrader: https"
fi
ufw_ --force enable
((DRY_RUN)) || ufw status verbose
