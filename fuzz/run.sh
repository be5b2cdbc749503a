#!/usr/bin/env bash
# Run each fuzz harness for a bounded time (FUZZ_SECONDS, default 60 s each); fails on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
mkdir -p fuzz/corpus/replies fuzz/corpus/client fuzz/corpus/proxy fuzz/corpus/pool
printf '\x03220 ok\r\n250-a\r\n250 2.0.0 b\r\n' > fuzz/corpus/replies/seed
printf '\x10\x05220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n220 go\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n' > fuzz/corpus/client/seed
printf '\x00\x03\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x19220 hi\r\n' > fuzz/corpus/proxy/seed
# pool: flags, messages, cancel mask, then per connection/write a length byte and that many
# bytes of server output (a whole session with PIPELINING: two messages, the second cancelled).
printf '\x00\x01\x02\x07220 mx\r\n\x25250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n\x17250 ok\r\n250 ok\r\n354 go\r\n\x1f250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n\x07250 ok\r\n\x08221 bye\r\n' > fuzz/corpus/pool/seed
for harness in replies client proxy pool; do
    echo "fuzzing $harness for ${seconds}s"
    python "fuzz/fuzz_${harness}.py" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/crash-${harness}-" "fuzz/corpus/${harness}" 2>&1 | tail -n 4
done
