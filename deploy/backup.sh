#!/usr/bin/env bash
# Back up the tvtrader database: pg_dump custom format (restorable with deploy/restore.sh),
# mode 600, keeping the newest --keep dumps. Run nightly by tvtrader-backup.timer.
#
#   deploy/backup.sh [--dest /var/backups/tvtrader] [--keep 14] [--database-url URL]
#
# The database comes from --database-url or DATABASE_URL (the environment file), defaulting
# to the local `tvtrader` database over the socket.
set -euo pipefail
umask 077
DEST=/var/backups/tvtrader
KEEP=14
URL=${DATABASE_URL:-postgres:///tvtrader}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dest) DEST=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        --database-url) URL=$2; shift 2 ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "backup.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $KEEP =~ ^[1-9][0-9]*$ ]] || { echo "backup.sh: --keep must be a positive number" >&2; exit 2; }
# libpq understands postgresql:// but not Django's postgres:// spelling.
URL=${URL/#postgres:\/\//postgresql://}
mkdir -p "$DEST"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$DEST/tvtrader-$STAMP.dump
pg_dump --format=custom --no-owner --no-privileges --file="$OUT.partial" "$URL"
mv "$OUT.partial" "$OUT"
echo "backup: $OUT ($(du -h "$OUT" | cut -f1))"
# Rotation: newest first, delete beyond KEEP. Names sort by time (UTC stamp).
mapfile -t OLD < <(find "$DEST" -maxdepth 1 -name 'tvtrader-*.dump' -printf '%f\n' | sort -r | tail -n +"$((KEEP + 1))")
for name in "${OLD[@]}"; do
    rm -f -- "${DEST:?}/$name"
    echo "backup: rotated out $name"
done
