#!/bin/sh
# Start PostgreSQL as the upstream image does, on the cluster made at build time: the
# POSTGRES_USER role and POSTGRES_DB database are created first (once), then `postgres`
# listens on all interfaces. Arguments after `postgres` (e.g. `-c fsync=off`) are passed on.
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
marker="$PGDATA/.sbh-created-$user-$db"
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
if [ ! -e "$marker" ]; then
    {
        [ "$user" = postgres ] || echo "CREATE ROLE $(quote "$user") SUPERUSER LOGIN;"
        [ "$db" = postgres ] || echo "CREATE DATABASE $(quote "$db") OWNER $(quote "$user");"
    } | postgres --single -D "$PGDATA" postgres >/dev/null
    touch "$marker"
fi
if [ "${1:-postgres}" = postgres ]; then
    [ "$#" -gt 0 ] && shift
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
