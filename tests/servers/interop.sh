#!/usr/bin/env bash
# Start the interop servers on 127.0.0.1: aiosmtpd (Python) and Node's smtp-server (SMTP and
# LMTP). They accept mail and record it (nothing is relayed) to $STATE/interop/mail, which
# tests/integration/test_interop_servers.py reads; their ports are in $STATE/interop.json.
#
#   bash tests/servers/interop.sh           # (re)start both; safe to run repeatedly; no root needed
#   bash tests/servers/interop.sh stop      # stop both
#
# Needs python3 with aiosmtpd (the test extra), node >= 20 and npm (node_modules is installed
# here with `npm ci` from package-lock.json when missing).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${RAWSMTP_SERVER_STATE:-/tmp/rawsmtp-servers}
DIR=$STATE/interop
PYTHON=${PYTHON:-python3}
P_AIOSMTPD=2600 P_NODE_SMTP=2610 P_NODE_LMTP=2611

log() { echo "interop.sh: $*"; }
die() { echo "interop.sh: ERROR: $*" >&2; for f in "$DIR"/*.log; do [ -s "$f" ] && { echo "---- $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }

# Stop what a previous run started: only a pid whose command line is still ours (pids recycle).
stop() {
    local pidfile pid
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(tr -dc 0-9 <"$pidfile")
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -e aiosmtpd_server.py -e server.js; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
}

mkdir -p "$DIR"
stop
rm -f "$STATE/interop.json"
[ "${1:-start}" = stop ] && { log "stopped"; exit 0; }

command -v node >/dev/null || die "node not found (Node.js >= 20 is needed for smtp-server)"
"$PYTHON" -c "import aiosmtpd" 2>/dev/null || die "$PYTHON cannot import aiosmtpd: pip install -e '.[test]'"
if [ ! -d "$HERE/node/node_modules/smtp-server" ]; then
    log "npm ci in tests/servers/node"
    (cd "$HERE/node" && npm ci --no-audit --no-fund --silent) >"$DIR/npm.log" 2>&1 || die "npm ci failed"
fi

rm -rf "$DIR/mail"
mkdir -p "$DIR/mail"
CERTS=$("$PYTHON" -c "import sys; sys.path.insert(0, '$ROOT'); from rawsmtp.testing import CA_FILE, CERT_FILE, KEY_FILE; print(CA_FILE, CERT_FILE, KEY_FILE)")
read -r CA CERT KEY <<<"$CERTS"
"$PYTHON" - "$DIR/config.json" <<PY
import json, sys
json.dump({
    "host": "127.0.0.1",
    "aiosmtpd_port": $P_AIOSMTPD,
    "smtp_port": $P_NODE_SMTP,
    "lmtp_port": $P_NODE_LMTP,
    "cafile": "$CA",
    "cert": "$CERT",
    "key": "$KEY",
    "users": {"alice@example.test": "alice-secret", "bob@example.test": "pässwörd-ü€"},
    "tokens": {"alice@example.test": "ya29.interop-token"},
    "size": 10485760,
    "dir": "$DIR/mail",
}, open(sys.argv[1], "w"), indent=1)
PY

nohup "$PYTHON" "$HERE/aiosmtpd_server.py" "$DIR/config.json" >"$DIR/aiosmtpd.log" 2>&1 &
echo $! >"$DIR/aiosmtpd.pid"
nohup node "$HERE/node/server.js" "$DIR/config.json" >"$DIR/node.log" 2>&1 &
echo $! >"$DIR/node.pid"

for port in $P_AIOSMTPD $P_NODE_SMTP $P_NODE_LMTP; do
    for _ in $(seq 1 100); do
        "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" 2>/dev/null && break
        sleep 0.2
    done
    "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" 2>/dev/null \
        || die "nothing listens on 127.0.0.1:$port"
done
cp "$DIR/config.json" "$STATE/interop.json"
log "aiosmtpd on :$P_AIOSMTPD, smtp-server on :$P_NODE_SMTP (LMTP :$P_NODE_LMTP); mail in $DIR/mail"
