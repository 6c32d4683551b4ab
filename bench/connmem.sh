#!/usr/bin/env bash
# Memory per connection, for each proxy: an idle client connection (kept alive after
# one request) and a pooled upstream connection. Writes bench/CONNMEM.md (which
# bench/RESULTS.md includes). See bench/README.md.
#
#   bench/connmem.sh          # N=2000 connections per round
#   N=500 bench/connmem.sh
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
N=${N:-2000}
TARGETS=${TARGETS:-"outrigger haproxy nginx h2o"}

bench_init
check_ports_free $ALL_PORTS
[ "${SKIP_SETUP:-0}" = 1 ] || "$ROOT_DIR/scripts/setup.sh" --bench
write_www
write_origin_conf
start_nginx origin "$OUT/origin.conf" $P_ORIGIN || die "the upstream nginx must start"

# start_target NAME : starts it fresh; sets TPID, TPORT and UPORT (its upstream port).
start_target() {
  case $1 in
    outrigger) write_outrigger_plain "$OUT/outrigger.yaml" $P_OUTRIGGER $A_OUTRIGGER $P_ORIGIN
               start_outrigger outrigger "$OUT/outrigger.yaml" $P_OUTRIGGER; TPORT=$P_OUTRIGGER ;;
    haproxy)   write_haproxy_cfg; start_haproxy; TPORT=$P_HAPROXY ;;
    nginx)     write_nginxproxy_conf; start_nginx nginx-proxy "$OUT/nginx-proxy.conf" $P_NGINXPROXY; TPORT=$P_NGINXPROXY ;;
    h2o)       write_h2o_conf; start_h2o; TPORT=$P_H2O ;;
  esac
  UPORT=$(upstream_port "$1")
  TPID=$LAST_PID
  sleep 1
}

# round PATH SEQ : opens N connections to the target, each sending one GET of PATH
# (the answers are left in the kernel; with SEQ=1 each connection waits for its
# status line before the next opens, so one upstream connection serves them all),
# waits for them to be answered, and prints the RSS growth in KiB and the upstream
# connections the target then holds.
round() {
  local path=$1 seq=$2 r0 r1 fd i held line fds=()
  r0=$(status_kb VmRSS "$TPID")
  for i in $(seq "$N"); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$TPORT"
    printf 'GET %s HTTP/1.1\r\nHost: bench\r\n\r\n' "$path" >&"$fd"
    [ "$seq" = 1 ] && { read -r -t 5 line <&"$fd" || true; }
    fds+=("$fd")
  done
  sleep 3   # /slow answers after 1 s
  r1=$(status_kb VmRSS "$TPID")
  held=$(own_conns "$UPORT" "$TPID")
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  echo "$((r1 - r0)) $held"
}

rows=""
for t in $TARGETS; do
  start_target "$t" || { rows+="| $t | skipped: $SKIP_MSG | | | |"$'\n'; continue; }
  read -r idle_kb held_fast < <(round /small.txt 1)
  stop_pid "$TPID"
  start_target "$t"
  read -r slow_kb held_slow < <(round /slow 0)
  stop_pid "$TPID"
  rows+=$(awk -v t="$t" -v n="$N" -v a="$idle_kb" -v b="$slow_kb" -v hf="$held_fast" -v hs="$held_slow" 'BEGIN {
    client = a * 1024 / n
    both = b * 1024 / n
    up = hs > 0 ? (b - a) * 1024 / hs : 0   # a: N idle clients; b: N clients and hs upstream
    printf "| %s | %.0f | %d | %.0f | %.0f |", t, client, hs, both, up }')$'\n'
  log "$t: idle clients +$idle_kb KiB ($held_fast upstream connections held), after $N concurrent requests +$slow_kb KiB ($held_slow held)"
done

{
  echo "## Memory per connection"
  echo
  echo "Measured by \`bench/connmem.sh\` on $(date -u '+%Y-%m-%d') (commit $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)), $N connections a round, each proxy started fresh for each round. *Idle client*: $N connections each sent one small GET, one after the other (so one upstream connection serves them all), and stay open (kept alive); the RSS growth over $N. *After a burst*: $N connections each sent a GET the upstream answers after 1 s, so the proxy had $N requests in flight and then keeps the upstream connections it opened (pooled); the growth over $N is what a connection of concurrency leaves behind, and the difference from the idle round, over the upstream connections held, bounds a pooled upstream connection from above (it includes read buffers the burst freed into the allocator). Kernel socket buffers are not in RSS."
  echo
  echo "| proxy | idle client connection, bytes | upstream connections held after the burst | client + upstream after the burst, bytes per connection | pooled upstream connection, bytes (upper bound) |"
  echo "|---|--:|--:|--:|--:|"
  printf '%s' "$rows"
} >"$BENCH_DIR/CONNMEM.md"
cat "$BENCH_DIR/CONNMEM.md"
