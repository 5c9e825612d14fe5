#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: `start` prints its URL, `stop DIR` ends it.
# Debian's postgresql package (installed if missing); run as the postgres user, since the server
# refuses root; listens on 127.0.0.1 only, data and socket in a temporary folder.
# The server's default TimeZone is deliberately not UTC, and its offset is not a whole hour
# (Asia/Kolkata, +05:30), so a naive `timestamp` or a session-zone-dependent conversion shows up in the
# tests instead of hiding behind a UTC server; PG_TEST_TIMEZONE=NAME overrides it (PG_TEST_TIMEZONE=UTC
# for the old behaviour). It is the server's setting, so every new connection's `SHOW TimeZone` gives it.
set -euo pipefail
case "${1:-}" in
start)
    zone=${PG_TEST_TIMEZONE:-Asia/Kolkata}
    case "$zone" in *[!A-Za-z0-9/_+-]*|'') echo "PG_TEST_TIMEZONE: not a time zone name: $zone" >&2; exit 2 ;; esac
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bin" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    dir=$(mktemp -d /tmp/switchboard-pg.XXXXXX)
    chown postgres "$dir"
    port=${PGPORT_FOR_TESTS:-55432}
    su postgres -c "cd / && $bin/initdb -D $dir/data -A trust -U postgres" >&2
    if ! su postgres -c "cd / && $bin/pg_ctl -D $dir/data -l $dir/log -w -o '-h 127.0.0.1 -p $port -k $dir -c timezone=$zone' start" >&2; then
        cat "$dir/log" >&2 2>/dev/null || true  # an unknown PG_TEST_TIMEZONE ends here, say
        rm -rf "$dir"
        exit 1
    fi
    echo "$dir postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    su postgres -c "cd / && $bin/pg_ctl -D $2/data -m fast -w stop" >&2 || true
    rm -rf "$2"
    ;;
*)
    echo "usage: scripts/postgres.sh start | stop DIR" >&2
    exit 2
    ;;
esac
