#!/usr/bin/env bash
# Stop every test server started by tests/servers/setup.sh (idempotent; safe if nothing runs).
#   STATE=${RAWSMTP_SERVER_STATE:-/tmp/rawsmtp-servers}
STATE=${STATE%/}
# setup.sh records the state directory it used last, so an instance started with another
# RAWSMTP_SERVER_STATE is stopped too.
LAST_STATE=$(cat /etc/postfix/rawsmtp/last-state 2>/dev/null || true)
set -uo pipefail

STATE=${RAWSMTP_SERVER_STATE:-/tmp/rawsmtp-servers}
STATE=${STATE%/}
# setup.sh records the state directory it used last, so an instance started with another
# RAWSMTP_SERVER_STATE is stopped too.
LAST_STATE=$(cat /etc/postfix/rawsmtp/last-state 2>/dev/null || true)

# kill_pidfile FILE EXPECTED_COMM: TERM the process named in FILE (only if its command name
# matches, so a recycled pid is never hit), wait up to 5 s, then KILL; remove the pidfile.
kill_pidfile() {
    local file=$1 expect=$2 pid comm i
    [ -f "$file" ] || return 0
    pid=$(tr -dc 0-9 <"$file")
    if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
        comm=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
        case "$comm" in
        *"$expect"*)
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 50); do
                [ -d "/proc/$pid" ] || break
                # a zombie child of ours counts as gone
                grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
                sleep 0.1
            done
            if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
            ;;
        esac
    fi
    rm -f "$file"
}

# Postfix (the default instance in /etc/postfix).
if [ -f /etc/postfix/main.cf ] && postfix status >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
    for i in $(seq 50); do
        postfix status >/dev/null 2>&1 || break
        sleep 0.1
    done
fi

stop_state() {
    local STATE=$1 f pid master st d dovecot_kids DOVECOT_CONF DOVECOT_PIDFILE
    # Dovecot (our private instance; its master.pid lives in our base_dir).
    # Postfix is stopped first so no smtpd holds the auth socket open; otherwise Dovecot's auth/log/
    # anvil/stats children can outlive the master, so remember them and clean up afterwards.
    DOVECOT_CONF=$STATE/dovecot/dovecot.conf
    DOVECOT_PIDFILE=$STATE/dovecot/run/master.pid
    dovecot_kids=""
    if [ -f "$DOVECOT_PIDFILE" ]; then
        master=$(tr -dc 0-9 <"$DOVECOT_PIDFILE")
        if [ -n "$master" ]; then # children of the master (no procps needed)
            for st in /proc/[0-9]*/status; do
                if grep -q "^PPid:[[:space:]]*$master\$" "$st" 2>/dev/null; then
                    d=${st%/status}
                    dovecot_kids="$dovecot_kids ${d#/proc/}"
                fi
            done
        fi
    fi
    if [ -f "$DOVECOT_CONF" ] && [ -f "$DOVECOT_PIDFILE" ]; then
        doveadm -c "$DOVECOT_CONF" stop >/dev/null 2>&1 || true
    fi
    kill_pidfile "$DOVECOT_PIDFILE" dovecot
    for pid in $dovecot_kids; do
        if [ -d "/proc/$pid" ]; then
            case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
            dovecot-rawsmtp/*) kill -TERM "$pid" 2>/dev/null || true ;;
            esac
        fi
    done

    for f in "$STATE"/microsocks-*.pid; do [ -e "$f" ] && kill_pidfile "$f" microsocks; done
    for f in "$STATE"/tinyproxy-*.pid; do [ -e "$f" ] && kill_pidfile "$f" tinyproxy; done
    for f in "$STATE"/smtp-sink-*.pid; do [ -e "$f" ] && kill_pidfile "$f" smtp-sink; done
    kill_pidfile "$STATE/oauth.pid" oauth_introspect

}

stop_state "$STATE"
if [ -n "$LAST_STATE" ] && [ "$LAST_STATE" != "$STATE" ]; then
    stop_state "$LAST_STATE"
fi
# aiosmtpd and Node's smtp-server, started by interop.sh.
RAWSMTP_SERVER_STATE=$STATE bash "$(dirname "${BASH_SOURCE[0]}")/interop.sh" stop >/dev/null || true

exit 0
