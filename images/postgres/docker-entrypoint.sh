#!/bin/sh
# The official image's contract, in short: on an empty $PGDATA, initdb with POSTGRES_PASSWORD for `postgres`
# (scram-sha-256 for every network peer), then run the command as the user the container runs as (never root).
set -eu
if [ "$(id -u)" = 0 ]; then
    echo "run this image as the postgres user (uid 999): user: \"999:999\"" >&2
    exit 1
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the database is never created without a password}"
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # UTF-8, as the official image and the native runner: the C locale alone would make an SQL_ASCII database, whose
    # text psycopg hands back as bytes.
    initdb --username=postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
fi
exec "$@"
