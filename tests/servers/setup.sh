#!/usr/bin/env bash
# Configure and start real mail servers on 127.0.0.1 for rawsmtp's integration tests.
#
#   sudo bash tests/servers/setup.sh        # (re)start everything; safe to run repeatedly
#   sudo bash tests/servers/stop.sh         # stop everything
#
# Needs (installed by CI, not by this script): postfix dovecot-core dovecot-lmtpd microsocks
# tinyproxy openssl python3.  Must run as root (it writes /etc/postfix/main.cf + master.cf).
#
# Environment:
#   RAWSMTP_SERVER_STATE  state directory (default /tmp/rawsmtp-servers); servers.json is written there
#   RAWSMTP_MAIL_USER     owner of the delivered mail (default: $SUDO_USER when run via sudo by a
#                         non-root user, so the tests can read the Maildirs; otherwise "vmail",
#                         created as a system user if missing)
#   RAWSMTP_POSTFIX_QUEUE "disk" keeps Postfix's queue in /var/spool/postfix; by default it goes to
#                         /dev/shm/rawsmtp-postfix when /dev/shm has 1 GB free (see below)
#
# Every run stops the previous instances, wipes the delivered mail, rewrites all configs and starts
# everything again, then waits (<= 30 s) for all ports and writes $STATE/servers.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${RAWSMTP_SERVER_STATE:-/tmp/rawsmtp-servers}
case "$STATE" in /*) ;; *) STATE=$(pwd)/$STATE ;; esac
STATE=${STATE%/}
case "$STATE" in *[[:space:]]*) echo "setup.sh: ERROR: RAWSMTP_SERVER_STATE must not contain whitespace" >&2; exit 1 ;; esac

die() {
    echo "setup.sh: ERROR: $*" >&2
    exit 1
}
# die_log MESSAGE LOGFILE...: fail with the tail of the relevant logs
die_log() {
    local msg=$1 f
    shift
    echo "setup.sh: ERROR: $msg" >&2
    for f in "$@"; do
        if [ -s "$f" ]; then
            echo "---- last lines of $f ----" >&2
            tail -n 30 "$f" >&2
        fi
    done
    exit 1
}
log() { echo "setup.sh: $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (it rewrites /etc/postfix/main.cf and master.cf and starts daemons)"
for cmd in postfix postconf smtp-sink dovecot doveadm microsocks tinyproxy openssl python3; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found; install postfix dovecot-core dovecot-lmtpd microsocks tinyproxy openssl python3"
done

# Port map (everything on 127.0.0.1).
P_POSTFIX=2525 P_POSTFIX_TLS=4650 P_POSTFIX_SMALL=2527 P_SUBMISSION=5870 P_SUBMISSION_PLAIN=5871
P_POSTFIX_NOPIPE=2528 P_SINK=2526 P_SINK_LMTP=2425 P_LMTP=2424 P_SOCKS=1080 P_SOCKS_AUTH=1081
P_HTTP=3128 P_HTTP_AUTH=3129 P_OAUTH=8089
ALL_PORTS="$P_POSTFIX $P_POSTFIX_TLS $P_POSTFIX_SMALL $P_SUBMISSION $P_SUBMISSION_PLAIN $P_POSTFIX_NOPIPE $P_SINK $P_SINK_LMTP $P_LMTP $P_SOCKS $P_SOCKS_AUTH $P_HTTP $P_HTTP_AUTH $P_OAUTH"
# Ports tinyproxy may CONNECT to (8089/1080/... deliberately not allowed: CONNECT there gets 403).
CONNECT_PORTS="$P_POSTFIX $P_SINK $P_POSTFIX_TLS $P_SUBMISSION $P_SUBMISSION_PLAIN $P_POSTFIX_SMALL $P_POSTFIX_NOPIPE $P_LMTP $P_SINK_LMTP"

ALICE_USER=alice@example.test ALICE_PASS=alice-secret
BOB_USER=bob@example.test BOB_PASS='pässwörd-ü€'
PROXY_USER=proxyuser PROXY_PASS=proxypass

# ---------------------------------------------------------------------------------------------
# 0. stop whatever a previous run started
# ---------------------------------------------------------------------------------------------
log "stopping previous instances (if any)"
RAWSMTP_SERVER_STATE=$STATE bash "$HERE/stop.sh"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
busy=""
for p in $ALL_PORTS; do port_busy "$p" && busy="$busy $p"; done
[ -z "$busy" ] || die "port(s)$busy on 127.0.0.1 are still in use by something this script did not start (see: ss -ltnp)"

# ---------------------------------------------------------------------------------------------
# 1. state directory, mail user, certificate
# ---------------------------------------------------------------------------------------------
mkdir -p "$STATE"
chmod 0755 "$STATE"

MAIL_USER=${RAWSMTP_MAIL_USER:-}
if [ -z "$MAIL_USER" ]; then
    if [ -n "${SUDO_USER:-}" ] && [ "${SUDO_USER}" != root ] && id -u "$SUDO_USER" >/dev/null 2>&1; then
        MAIL_USER=$SUDO_USER
    else
        MAIL_USER=vmail
    fi
fi
if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
    [ "$MAIL_USER" = vmail ] || die "mail user '$MAIL_USER' does not exist"
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
fi
MAIL_UID=$(id -u "$MAIL_USER")
MAIL_GID=$(id -g "$MAIL_USER")
[ "$MAIL_UID" != 0 ] || die "mail user must not be root"

# Fresh mail stores on every run.
rm -rf "$STATE/mail" "$STATE/lmtp-mail" "$STATE/dovecot-home"
install -d -m 0755 -o "$MAIL_UID" -g "$MAIL_GID" "$STATE/mail" "$STATE/lmtp-mail" "$STATE/dovecot-home"

# Self-signed certificate (kept across runs while valid for >= 2 more days).
if ! { [ -s "$STATE/cert.pem" ] && [ -s "$STATE/key.pem" ] &&
    openssl x509 -checkend 172800 -noout -in "$STATE/cert.pem" >/dev/null 2>&1; }; then
    log "creating self-signed certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$STATE/key.pem" -out "$STATE/cert.pem" \
        -days 30 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        >"$STATE/openssl.log" 2>&1 || die_log "openssl failed" "$STATE/openssl.log"
fi
chmod 0644 "$STATE/cert.pem"
chmod 0600 "$STATE/key.pem" # read by postfix as root before it drops privileges
# A copy for Postfix in its own tree (in case $STATE lives on a mount root cannot read later).
install -d -m 0755 /etc/postfix/rawsmtp
echo "$STATE" >/etc/postfix/rawsmtp/last-state
install -m 0644 "$STATE/cert.pem" /etc/postfix/rawsmtp/cert.pem
install -m 0600 "$STATE/key.pem" /etc/postfix/rawsmtp/key.pem

# ---------------------------------------------------------------------------------------------
# 2. Postfix
# ---------------------------------------------------------------------------------------------
log "configuring postfix"
# The queue lives on tmpfs when one with room is at hand (1.5x message_size_limit must stay free):
# cleanup(8) fsyncs every queue file, and on a VM's disk that fsync, not the client, sets how fast
# any client can send (bench/ would then compare the disk, not the clients).  RAWSMTP_POSTFIX_QUEUE=disk
# keeps the stock location.  Nothing in the queue outlives a run: every recipient is delivered locally.
QUEUE=/var/spool/postfix
shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ "${RAWSMTP_POSTFIX_QUEUE:-tmpfs}" != disk ] && [ "${shm_free_kb:-0}" -ge 1048576 ]; then
    QUEUE=/dev/shm/rawsmtp-postfix
    install -d -m 0755 -o root -g root "$QUEUE"
fi
# Every local part @example.test exists (no '/' and no leading '.', so it cannot escape the mail
# root).  Delivery: Postfix's virtual(8) forbids regexp substitution ($1) in virtual_mailbox_maps,
# so mail goes through a pipe(8) transport running deliver_maildir.sh -> $STATE/mail/<localpart>/new/
cat >/etc/postfix/rawsmtp/vmailbox <<'EOF'
/^[^@\/.][^@\/]*@example\.test$/	OK
EOF
install -m 0755 "$HERE/deliver_maildir.sh" /etc/postfix/rawsmtp/deliver_maildir.sh
MAIL_GROUP=$(id -gn "$MAIL_USER")
cat >/etc/postfix/rawsmtp/rcpt_access <<'EOF'
/^reject@example\.test$/	550 5.1.1 no such user
/^tempfail@example\.test$/	450 4.2.0 try later
EOF

cat >/etc/postfix/main.cf <<EOF
# Written by rawsmtp tests/servers/setup.sh -- test configuration, loopback only, never relays.
compatibility_level = 3.6
queue_directory = $QUEUE
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
data_directory = /var/lib/postfix
mail_owner = postfix
setgid_group = postdrop

myhostname = mx.example.test
mydomain = example.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# never deliver anywhere but the local virtual mailboxes
relayhost =
default_transport = discard
relay_transport = discard
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
notify_classes =

smtputf8_enable = yes
message_size_limit = 104857600
mailbox_size_limit = 0
virtual_mailbox_limit = 0

virtual_mailbox_domains = example.test
virtual_mailbox_maps = regexp:/etc/postfix/rawsmtp/vmailbox
virtual_transport = rawsmtpmaildir
rawsmtpmaildir_destination_recipient_limit = 1

smtpd_banner = \$myhostname ESMTP rawsmtp test server
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_junk_command_limit = 1000
smtpd_recipient_limit = 1000
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
disable_vrfy_command = no
smtpd_discard_ehlo_keywords =

smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_recipient_restrictions = check_recipient_access regexp:/etc/postfix/rawsmtp/rcpt_access, permit
# used by the submission service (5870): authentication required
rawsmtp_submission_relay = permit_sasl_authenticated, reject
rawsmtp_submission_recipient = check_recipient_access regexp:/etc/postfix/rawsmtp/rcpt_access, permit_sasl_authenticated, reject

smtpd_tls_cert_file = /etc/postfix/rawsmtp/cert.pem
smtpd_tls_key_file = /etc/postfix/rawsmtp/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtp_tls_security_level = none

smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_tls_auth_only = yes
smtpd_sasl_authenticated_header = yes

maillog_file = $STATE/postfix.log
maillog_file_prefixes = $STATE, /var, /dev/stdout
EOF

cat >/etc/postfix/master.cf <<EOF
# Written by rawsmtp tests/servers/setup.sh.  No chroot anywhere.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$P_POSTFIX inet n - n - - smtpd
  -o syslog_name=postfix/plain-$P_POSTFIX
127.0.0.1:$P_POSTFIX_TLS inet n - n - - smtpd
  -o syslog_name=postfix/implicit-tls-$P_POSTFIX_TLS
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
127.0.0.1:$P_POSTFIX_SMALL inet n - n - - smtpd
  -o syslog_name=postfix/small-$P_POSTFIX_SMALL
  -o message_size_limit=10000
127.0.0.1:$P_SUBMISSION inet n - n - - smtpd
  -o syslog_name=postfix/submission-$P_SUBMISSION
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=\$rawsmtp_submission_relay
  -o smtpd_recipient_restrictions=\$rawsmtp_submission_recipient
127.0.0.1:$P_SUBMISSION_PLAIN inet n - n - - smtpd
  -o syslog_name=postfix/auth-no-tls-$P_SUBMISSION_PLAIN
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=no
127.0.0.1:$P_POSTFIX_NOPIPE inet n - n - - smtpd
  -o syslog_name=postfix/nopipe-$P_POSTFIX_NOPIPE
  -o smtpd_discard_ehlo_keywords=chunking,pipelining
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
rawsmtpmaildir unix -   n       n       -       -       pipe
  flags=DRXu user=$MAIL_USER:$MAIL_GROUP argv=/etc/postfix/rawsmtp/deliver_maildir.sh $STATE/mail \${user}
EOF

: >"$STATE/postfix.log" # postfix is stopped here; start each run with a fresh log
: >"$STATE/postfix-start.log"
postfix check >"$STATE/postfix-check.log" 2>&1 || die_log "postfix check failed" "$STATE/postfix-check.log"
# postfix check does not parse regexp tables: make sure the maps answer as intended
[ "$(postmap -q alice@example.test regexp:/etc/postfix/rawsmtp/vmailbox 2>&1)" = "OK" ] ||
    die "virtual mailbox regexp table broken: $(postmap -q alice@example.test regexp:/etc/postfix/rawsmtp/vmailbox 2>&1)"
[ "$(postmap -q reject@example.test regexp:/etc/postfix/rawsmtp/rcpt_access 2>&1)" = "550 5.1.1 no such user" ] ||
    die "recipient access regexp table broken"
if [ -s "$STATE/postfix-check.log" ]; then
    echo "setup.sh: warning: postfix check printed:" >&2
    cat "$STATE/postfix-check.log" >&2
fi

# ---------------------------------------------------------------------------------------------
# 3. Dovecot (SASL for Postfix + LMTP), private instance with its own base_dir
# ---------------------------------------------------------------------------------------------
log "configuring dovecot"
DC=$STATE/dovecot
mkdir -p "$DC"
chmod 0755 "$DC"
rm -rf "$DC/run"

# passdb: {PLAIN} passwords (needed for CRAM-MD5/SCRAM); the file is UTF-8 (this script is UTF-8)
printf '%s:{PLAIN}%s\n%s:{PLAIN}%s\n' "$ALICE_USER" "$ALICE_PASS" "$BOB_USER" "$BOB_PASS" >"$DC/passwd"
# userdb overrides: quota@example.test gets a 1-byte quota, so LMTP delivery to it fails after DATA
printf 'quota@example.test::%s:%s::%s::userdb_quota_rule=*:bytes=1\n' \
    "$MAIL_UID" "$MAIL_GID" "$STATE/dovecot-home/quota" >"$DC/userdb"
chown root:dovecot "$DC/passwd" "$DC/userdb"
chmod 0640 "$DC/passwd" "$DC/userdb"

cat >"$DC/oauth2.conf.ext" <<EOF
# Dovecot 2.3 oauth2 passdb: RFC 7662 token introspection against tests/servers/oauth_introspect.py
introspection_mode = post
introspection_url = http://127.0.0.1:$P_OAUTH/
force_introspection = yes
username_attribute = username
username_format = %u
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
chmod 0644 "$DC/oauth2.conf.ext"

cat >"$DC/dovecot.conf" <<EOF
# Written by rawsmtp tests/servers/setup.sh -- complete config, nothing from /etc/dovecot is read.
instance_name = rawsmtp
base_dir = $DC/run
state_dir = $DC/state
protocols = lmtp
listen = 127.0.0.1
hostname = mx.example.test
postmaster_address = postmaster@example.test
log_path = $STATE/dovecot.log
info_log_path = $STATE/dovecot.log
ssl = no

auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 xoauth2 oauthbearer
auth_failure_delay = 0
auth_username_format = %u
disable_plaintext_auth = no
auth_verbose = yes

first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:$STATE/lmtp-mail/%n
mailbox_list_index = yes
mail_plugins = quota
lmtp_rcpt_check_quota = no

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DC/passwd
  mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DC/oauth2.conf.ext
}

userdb {
  driver = passwd-file
  args = username_format=%u $DC/userdb
}
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$STATE/dovecot-home/%n allow_all_users=yes
}

plugin {
  quota = count:User quota
  quota_vsizes = yes
}

service auth {
  unix_listener $QUEUE/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# No auth penalty: the tests fail logins from 127.0.0.1 on purpose, and anvil would then delay
# every later AUTH from it by up to 15 s (long enough for Postfix to give up with a 454).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $P_LMTP
  }
}
EOF
mkdir -p "$DC/state"
: >"$STATE/dovecot.log"
doveconf -c "$DC/dovecot.conf" -n >"$DC/doveconf.out" 2>&1 || die_log "dovecot config invalid" "$DC/doveconf.out"

# ---------------------------------------------------------------------------------------------
# start everything
# ---------------------------------------------------------------------------------------------
# bg PIDFILE LOGFILE CMD...: start CMD detached (own session), record its pid
bg() {
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
}

log "starting oauth introspection server on $P_OAUTH"
for f in oauth smtp-sink microsocks-$P_SOCKS microsocks-$P_SOCKS_AUTH tinyproxy-$P_HTTP tinyproxy-$P_HTTP_AUTH; do
    : >"$STATE/$f.log"
done
bg "$STATE/oauth.pid" "$STATE/oauth.log" python3 "$HERE/oauth_introspect.py" --host 127.0.0.1 --port "$P_OAUTH"

log "starting dovecot"
dovecot -c "$DC/dovecot.conf" >>"$STATE/dovecot.log" 2>&1 || die_log "dovecot failed to start" "$STATE/dovecot.log"

log "starting postfix"
postfix start >>"$STATE/postfix-start.log" 2>&1 || die_log "postfix failed to start" "$STATE/postfix-start.log" "$STATE/postfix.log"

log "starting smtp-sink on $P_SINK (SMTP) and $P_SINK_LMTP (LMTP)"
bg "$STATE/smtp-sink-$P_SINK.pid" "$STATE/smtp-sink.log" smtp-sink -u nobody "127.0.0.1:$P_SINK" 1000
bg "$STATE/smtp-sink-$P_SINK_LMTP.pid" "$STATE/smtp-sink.log" smtp-sink -L -u nobody "127.0.0.1:$P_SINK_LMTP" 1000

log "starting microsocks on $P_SOCKS and $P_SOCKS_AUTH"
bg "$STATE/microsocks-$P_SOCKS.pid" "$STATE/microsocks-$P_SOCKS.log" microsocks -i 127.0.0.1 -p "$P_SOCKS"
bg "$STATE/microsocks-$P_SOCKS_AUTH.pid" "$STATE/microsocks-$P_SOCKS_AUTH.log" \
    microsocks -i 127.0.0.1 -p "$P_SOCKS_AUTH" -u "$PROXY_USER" -P "$PROXY_PASS"

write_tinyproxy_conf() { # PORT [auth]
    local port=$1 auth=${2:-} p
    {
        echo "# Written by rawsmtp tests/servers/setup.sh"
        echo "User nobody"
        echo "Group nogroup"
        echo "Port $port"
        echo "Listen 127.0.0.1"
        echo "Timeout 600"
        echo "LogLevel Info"
        echo "MaxClients 100"
        echo "Allow 127.0.0.1"
        echo "DisableViaHeader Yes"
        for p in $CONNECT_PORTS; do echo "ConnectPort $p"; done
        [ -z "$auth" ] || echo "BasicAuth $PROXY_USER $PROXY_PASS"
    } >"$STATE/tinyproxy-$port.conf"
}
log "starting tinyproxy on $P_HTTP and $P_HTTP_AUTH"
write_tinyproxy_conf "$P_HTTP"
write_tinyproxy_conf "$P_HTTP_AUTH" auth
bg "$STATE/tinyproxy-$P_HTTP.pid" "$STATE/tinyproxy-$P_HTTP.log" tinyproxy -d -c "$STATE/tinyproxy-$P_HTTP.conf"
bg "$STATE/tinyproxy-$P_HTTP_AUTH.pid" "$STATE/tinyproxy-$P_HTTP_AUTH.log" tinyproxy -d -c "$STATE/tinyproxy-$P_HTTP_AUTH.conf"

# ---------------------------------------------------------------------------------------------
# 5. readiness (bounded: ~30 s in total)
# ---------------------------------------------------------------------------------------------
log_for_port() {
    case "$1" in
    "$P_OAUTH") echo "$STATE/oauth.log" ;;
    "$P_LMTP") echo "$STATE/dovecot.log" ;;
    "$P_SINK" | "$P_SINK_LMTP") echo "$STATE/smtp-sink.log" ;;
    "$P_SOCKS" | "$P_SOCKS_AUTH") echo "$STATE/microsocks-$1.log" ;;
    "$P_HTTP" | "$P_HTTP_AUTH") echo "$STATE/tinyproxy-$1.log" ;;
    *) echo "$STATE/postfix.log" ;;
    esac
}
deadline=$((SECONDS + 30))
pending=$ALL_PORTS
# pidfile:log pairs of the background daemons, to notice one that died at startup
DAEMONS="$STATE/oauth.pid:$STATE/oauth.log $STATE/dovecot/run/master.pid:$STATE/dovecot.log"
for p in $P_SINK $P_SINK_LMTP; do DAEMONS="$DAEMONS $STATE/smtp-sink-$p.pid:$STATE/smtp-sink.log"; done
for p in $P_SOCKS $P_SOCKS_AUTH; do DAEMONS="$DAEMONS $STATE/microsocks-$p.pid:$STATE/microsocks-$p.log"; done
for p in $P_HTTP $P_HTTP_AUTH; do DAEMONS="$DAEMONS $STATE/tinyproxy-$p.pid:$STATE/tinyproxy-$p.log"; done
while :; do
    for d in $DAEMONS; do
        pf=${d%%:*}
        pid=$(tr -dc 0-9 <"$pf" 2>/dev/null || true)
        if [ -z "$pid" ] || [ ! -d "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
            die_log "daemon with pidfile $pf exited during startup" "${d#*:}"
        fi
    done
    postfix status >/dev/null 2>&1 || die_log "postfix master exited during startup" "$STATE/postfix.log"
    still=""
    for p in $pending; do port_busy "$p" || still="$still $p"; done
    pending=$still
    [ -n "$pending" ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
        logs=""
        for p in $pending; do logs="$logs $(log_for_port "$p")"; done
        # shellcheck disable=SC2086
        die_log "not listening after 30 s on 127.0.0.1 port(s):$pending" $(echo $logs | tr ' ' '\n' | sort -u)
    fi
    sleep 0.2
done
for i in $(seq 50); do
    [ -S "$QUEUE/private/auth" ] && break
    sleep 0.1
done
[ -S "$QUEUE/private/auth" ] || die_log "dovecot auth socket $QUEUE/private/auth missing" "$STATE/dovecot.log"

# servers.json
export STATE QUEUE P_POSTFIX P_POSTFIX_TLS P_POSTFIX_SMALL P_SUBMISSION P_SUBMISSION_PLAIN P_POSTFIX_NOPIPE \
    P_SINK P_SINK_LMTP P_LMTP P_SOCKS P_SOCKS_AUTH P_HTTP P_HTTP_AUTH P_OAUTH \
    ALICE_USER ALICE_PASS BOB_USER BOB_PASS PROXY_USER PROXY_PASS
python3 - <<'PYEOF'
import json, os
e = os.environ
s = e["STATE"]
port = lambda name: int(e["P_" + name])
data = {
    "host": "127.0.0.1",
    "cafile": f"{s}/cert.pem",
    "maildir_root": f"{s}/mail",
    "postfix_queue": e["QUEUE"],
    "ports": {"postfix": port("POSTFIX"), "postfix_tls": port("POSTFIX_TLS"),
              "postfix_small": port("POSTFIX_SMALL"), "submission": port("SUBMISSION"),
              "submission_plain": port("SUBMISSION_PLAIN"), "postfix_nopipe": port("POSTFIX_NOPIPE"),
              "sink": port("SINK"), "sink_lmtp": port("SINK_LMTP"), "lmtp": port("LMTP"),
              "socks5": port("SOCKS"), "socks5_auth": port("SOCKS_AUTH"), "http_proxy": port("HTTP"),
              "http_proxy_auth": port("HTTP_AUTH"), "oauth": port("OAUTH")},
    "users": {"alice": [e["ALICE_USER"], e["ALICE_PASS"]], "bob": [e["BOB_USER"], e["BOB_PASS"]]},
    "oauth_tokens": {"good": "good-token-alice", "renewed": "renewed-token-alice"},
    "proxy_auth": [e["PROXY_USER"], e["PROXY_PASS"]],
    "lmtp_mail_root": f"{s}/lmtp-mail",
}
tmp = f"{s}/servers.json.tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(data, f, ensure_ascii=False, indent=2)
    f.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, f"{s}/servers.json")
PYEOF

log "all servers up; wrote $STATE/servers.json"
