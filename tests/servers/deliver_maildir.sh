#!/bin/sh
# Postfix pipe(8) delivery agent for the rawsmtp test server:
#   deliver_maildir.sh ROOT LOCALPART   (message on stdin)
# stores the message as ROOT/LOCALPART/new/<unique> (Maildir: written to tmp/, then renamed).
# Postfix's virtual(8) cannot do this: it forbids regexp substitution ($1) in virtual_mailbox_maps.
# Exit codes follow sysexits: 67 (EX_NOUSER) bounces, 75 (EX_TEMPFAIL) defers.
set -u
umask 077
root=$1
lp=$2
case "$lp" in
"" | .* | */*)
    echo "unsafe local part" >&2
    exit 67
    ;;
esac
dir=$root/$lp
mkdir -p "$dir/tmp" "$dir/new" "$dir/cur" || exit 75
rnd=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
now=$(date +%s.%N)
name="${now%.*}.M${now#*.}P$$R$rnd.rawsmtp"
cat >"$dir/tmp/$name" || {
    rm -f "$dir/tmp/$name"
    exit 75
}
mv "$dir/tmp/$name" "$dir/new/$name" || exit 75
exit 0
