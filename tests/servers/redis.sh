#!/usr/bin/env bash
# A loopback redis-server for the shared-limiter and Celery tests: no persistence, port 6390.
#   bash tests/servers/redis.sh [start|stop]      (RAWSMTP_REDIS_PORT overrides the port)
# Idempotent: start leaves a server already answering on the port alone.
set -euo pipefail
PORT=${RAWSMTP_REDIS_PORT:-6390}
STATE=${RAWSMTP_SERVER_STATE:-/tmp/rawsmtp-servers}
PIDFILE="${STATE%/}/redis-$PORT.pid"

case "${1:-start}" in
start)
    mkdir -p "${STATE%/}"
    if redis-cli -p "$PORT" ping >/dev/null 2>&1; then exit 0; fi
    redis-server --port "$PORT" --bind 127.0.0.1 --protected-mode yes --save '' \
        --appendonly no --daemonize yes --pidfile "$PIDFILE" --dir "${STATE%/}" \
        --logfile "${STATE%/}/redis-$PORT.log"
    for _ in $(seq 50); do
        redis-cli -p "$PORT" ping >/dev/null 2>&1 && exit 0
        sleep 0.1
    done
    echo "redis-server did not answer on 127.0.0.1:$PORT" >&2
    exit 1
    ;;
stop)
    if [ -f "$PIDFILE" ]; then
        pid=$(tr -dc 0-9 <"$PIDFILE")
        case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)" in
        *redis-server*) kill -TERM "$pid" ;;
        esac
        rm -f "$PIDFILE"
    fi
    ;;
*)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
