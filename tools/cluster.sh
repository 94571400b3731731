#!/usr/bin/env bash
# `make cluster`: NODES roomserver processes on ports PORT, PORT+1, … sharing one Redis.
# REDIS_URL names a Redis you run; without it a throw-away redis-server (no persistence) is
# started on REDIS_PORT and stopped with the nodes. Apps: $ROOMSERVER_APP as for `serve`;
# without it the nodes run in dev mode with one shared $ROOMSERVER_DEV_SECRET (each node
# would otherwise pick its own, and a token minted by one would be refused by the others).
# Ctrl-C, or any node exiting, stops everything.
set -eu
BIN=${BIN:-.venv/bin}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8080}
NODES=${NODES:-2}
REDIS_PORT=${REDIS_PORT:-6390}
REDIS_URL=${REDIS_URL:-}

pids=""
stop() {
    trap - INT TERM EXIT
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

if [ -z "$REDIS_URL" ]; then
    if ! command -v redis-server >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "cluster: installing Debian's redis-server" >&2
            apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2
        else
            echo "cluster: no redis-server: install it (Debian: apt-get install redis-server) or give REDIS_URL=redis://host:port/0" >&2
            exit 1
        fi
    fi
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile '' >/dev/null &
    pids="$pids $!"
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    i=0
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || { echo "cluster: redis-server on $REDIS_PORT did not start" >&2; exit 1; }
        sleep 0.1
    done
    echo "cluster: started redis-server on 127.0.0.1:$REDIS_PORT (stops with the nodes)"
fi

if [ -z "${ROOMSERVER_APP:-}" ] && [ -z "${ROOMSERVER_DEV_SECRET:-}" ]; then
    ROOMSERVER_DEV_SECRET=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
    export ROOMSERVER_DEV_SECRET
fi

n=0
while [ "$n" -lt "$NODES" ]; do
    "$BIN/roomserver" serve --host "$HOST" --port $((PORT + n)) --redis-url "$REDIS_URL" --node-id "node$n" &
    pids="$pids $!"
    n=$((n + 1))
done
wait -n
