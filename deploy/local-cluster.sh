#!/usr/bin/env bash
# A Redis Cluster (3 primaries + 3 replicas) and NODES roomserver processes on this
# machine, for demos and tests: no containers, Debian's redis-server.
#   deploy/local-cluster.sh                 # nodes on 8080..8082, Redis on 7101..7106
#   PORT=9000 REDIS_PORT=7201 NODES=3 deploy/local-cluster.sh
# Apps: $ROOMSERVER_APP as for `serve`; without it dev mode with one shared
# $ROOMSERVER_DEV_SECRET (printed). Prints "local-cluster: ready" with the node URLs once
# every node's /readyz answers 200. Ctrl-C (or SIGTERM) stops everything; so does any
# node exiting. Data lives in a temporary folder, removed at the end.
set -eu
BIN=${BIN:-.venv/bin}
ROOMSERVER=${ROOMSERVER:-$BIN/roomserver}   # the command; tests give `python -m roomserver.cli`
PYTHON=${PYTHON:-$BIN/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8080}
NODES=${NODES:-3}
REDIS_PORT=${REDIS_PORT:-7101}

dir=$(mktemp -d /tmp/roomserver-local-cluster.XXXXXX)
pids=""
stop() {
    trap - INT TERM EXIT
    [ -z "$pids" ] || kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v redis-server >/dev/null 2>&1 || {
    echo "local-cluster: no redis-server (Debian: apt-get install redis-server)" >&2
    exit 1
}

seeds=""
for i in 0 1 2 3 4 5; do
    port=$((REDIS_PORT + i))
    mkdir -p "$dir/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis-$port" --cluster-enabled yes \
        --cluster-node-timeout 2000 --save '' --appendonly no --daemonize no --logfile redis.log &
    pids="$pids $!"
    seeds="$seeds 127.0.0.1:$port"
done
for s in $seeds; do
    i=0
    until redis-cli -p "${s##*:}" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || { echo "local-cluster: redis-server on $s did not start" >&2; exit 1; }
        sleep 0.1
    done
done
redis-cli --cluster create $seeds --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2
    exit 1
}
i=0
until redis-cli -p "$REDIS_PORT" cluster info 2>/dev/null | grep -q cluster_state:ok; do
    i=$((i + 1))
    [ "$i" -lt 300 ] || { echo "local-cluster: the Redis Cluster did not become ok" >&2; exit 1; }
    sleep 0.1
done
# Orders and room changes are acknowledged only once a replica has them (and are refused
# while a primary has none): wait until every primary's replica is attached.
for seed in $seeds; do
    port=${seed##*:}
    redis-cli -p "$port" role 2>/dev/null | head -1 | grep -q master || continue
    i=0
    until redis-cli -p "$port" info replication 2>/dev/null | grep -q "slave0:.*state=online"; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || { echo "local-cluster: no replica of 127.0.0.1:$port came online" >&2; exit 1; }
        sleep 0.1
    done
done
echo "local-cluster: Redis Cluster on 127.0.0.1:$REDIS_PORT..$((REDIS_PORT + 5))"

if [ -z "${ROOMSERVER_APP:-}" ] && [ -z "${ROOMSERVER_DEV_SECRET:-}" ]; then
    ROOMSERVER_DEV_SECRET=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
    export ROOMSERVER_DEV_SECRET
    echo "local-cluster: dev mode, ROOMSERVER_DEV_SECRET=$ROOMSERVER_DEV_SECRET"
fi

cluster=$(echo $seeds | tr ' ' ',')
urls=""
n=0
while [ "$n" -lt "$NODES" ]; do
    $ROOMSERVER serve --host "$HOST" --port $((PORT + n)) --redis-cluster "$cluster" --node-id "node$n" &
    pids="$pids $!"
    urls="$urls http://$HOST:$((PORT + n))"
    n=$((n + 1))
done
for url in $urls; do
    i=0
    until "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/readyz', timeout=1)" "$url" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || { echo "local-cluster: $url is not ready" >&2; exit 1; }
        sleep 0.2
    done
done
echo "local-cluster: ready:$urls"
wait -n
