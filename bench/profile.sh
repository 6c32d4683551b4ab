#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (bench/PROFILE.md's method):
# one worker in front of the shortener's /healthz, wrk -t1 -c10 for 5 s with three extra
# request headers, the worker's instructions (start-up and shut-down included) divided by
# the requests served. Counts repeat whatever else the machine does, so two builds can be
# compared on a busy host.
#
#   bench/profile.sh [OUTRIGGER_BIN ...]     default: build-release/proxy/outrigger
#
# Prints one line per binary: instructions, requests, instructions per request.
# KEEP_PROFILE=PREFIX keeps each profile as PREFIX.<build dir> for callgrind_annotate.
# PROFILE_EXTRA="YAML" adds top-level keys to the configuration (a tracing block, a
# log line with access_log, ...) to count what a feature costs.
# Needs valgrind and wrk (apt-get install -y valgrind wrk).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

command -v valgrind >/dev/null || die "valgrind is missing: apt-get install -y valgrind"
command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
[ $# -gt 0 ] || set -- "$OUTRIGGER_BIN"
bench_init
start_shortener || die "$SKIP_MSG"

PORT=18031
ADMIN=19941
for bin in "$@"; do
  [ -x "$bin" ] || die "$bin: not an executable"
  dir=$(mktemp -d /tmp/pxprofile.XXXXXX)
  cat >"$dir/outrigger.yaml" <<EOF
workers: 1
admin: { address: 127.0.0.1:$ADMIN }
${PROFILE_EXTRA:-log: { level: warn \}}
listeners:
  - name: edge
    address: 127.0.0.1:$PORT
    routes:
      - { name: r, match: { prefix: / }, cluster: app }
clusters:
  - { name: app, endpoints: [127.0.0.1:$P_SHORTENER] }
EOF
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$bin" -c "$dir/outrigger.yaml" \
    >"$dir/log" 2>&1 &
  vg=$!
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  reqs=$(wrk -t1 -c10 -d5s -H 'X-A: 1' -H 'X-B: two' -H 'Accept: */*' "http://127.0.0.1:$PORT/healthz" |
    awk '/requests in/ {print $1}')
  kill -TERM "$vg"
  wait "$vg" || true
  total=$(awk '/^summary:/ {print $2}' "$dir/callgrind.out")
  [ -n "$total" ] && [ "${reqs:-0}" -gt 0 ] || { cat "$dir/log"; die "$bin: no profile"; }
  awk -v b="$bin" -v t="$total" -v r="$reqs" 'BEGIN { printf "%s: %d instructions, %d requests, %.2fk per request\n", b, t, r, t / r / 1000 }'
  if [ -n "${KEEP_PROFILE:-}" ]; then cp "$dir/callgrind.out" "$KEEP_PROFILE.$(basename "$(dirname "$(dirname "$bin")")")"; fi
  rm -rf "$dir"
done
