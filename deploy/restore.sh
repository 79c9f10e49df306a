#!/usr/bin/env bash
# Restore a tvtrader database dump made by deploy/backup.sh.
#
#   deploy/restore.sh FILE [--database-url URL] [--no-stop] [--yes]
#
# Stops the tvtrader services first (so no order is executed against a half-restored
# database) unless --no-stop, restores with pg_restore --clean, and starts them again.
# Signals received while stopped are not lost: TradingView resends on 5xx for ~15 s; beyond
# that they are gone, so restore outside busy bars.
set -euo pipefail
FILE=""
URL=${DATABASE_URL:-postgres:///tvtrader}
STOP=1
YES=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --database-url) URL=$2; shift 2 ;;
        --no-stop) STOP=0; shift ;;
        --yes) YES=1; shift ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "restore.sh: unknown option $1" >&2; exit 2 ;;
        *) FILE=$1; shift ;;
    esac
done
[[ -f $FILE ]] || { echo "restore.sh: no such dump: ${FILE:-(none given)}" >&2; exit 2; }
pg_restore --list "$FILE" >/dev/null || { echo "restore.sh: $FILE is not a pg_dump custom-format file" >&2; exit 2; }
URL=${URL/#postgres:\/\//postgresql://}
if ((!YES)); then
    read -r -p "Replace the database with $FILE? Type 'restore': " answer
    [[ $answer == restore ]] || { echo "restore.sh: cancelled"; exit 1; }
fi
if ((STOP)); then
    systemctl stop tvtrader.target
    trap 'systemctl start tvtrader.target' EXIT
fi
pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error --dbname="$URL" "$FILE"
echo "restore: $FILE restored"
