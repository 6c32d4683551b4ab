#!/usr/bin/env bash
# Leak check: Outrigger under valgrind --leak-check=full, a short wrk run
# through it, SIGTERM, then report valgrind's "definitely lost" bytes (expect 0).
#
#   bench/leakcheck.sh
#   WRK_SECONDS=10 CONNS=8 bench/leakcheck.sh
#   OUTRIGGER_BIN=build/proxy/outrigger bench/leakcheck.sh   # a Debug build: better stacks
#   TARGET=haproxy bench/leakcheck.sh                        # self-test of this script
#
# Env: WRK_SECONDS (5) CONNS (4) START_TIMEOUT (30 s) EXIT_TIMEOUT (30 s) SKIP_SETUP SKIP_BUILD
# Writes bench/out/valgrind.log. Exit: 0 no definite leak and a clean exit, 1 otherwise.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

WRK_SECONDS=${WRK_SECONDS:-5}
CONNS=${CONNS:-4}
START_TIMEOUT=${START_TIMEOUT:-30}
EXIT_TIMEOUT=${EXIT_TIMEOUT:-30}
TARGET=${TARGET:-outrigger}
PIN=0   # valgrind serializes threads anyway

bench_init
check_ports_free $ALL_PORTS
setup_and_build   # scripts/setup.sh --bench installs valgrind too
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
write_www
write_origin_conf
start_nginx origin "$OUT/origin.conf" $P_ORIGIN || die "the upstream nginx must start"

VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite
    --num-callers=30 --log-file="$OUT/valgrind.log")
case $TARGET in
  outrigger)
    [ -x "$OUTRIGGER_BIN" ] || { log "FAIL ${OUTRIGGER_BIN#$ROOT_DIR/} not built"; exit 1; }
    write_outrigger_plain "$OUT/leak.yaml" $P_OUTRIGGER $A_LEAK $P_ORIGIN
    "$OUTRIGGER_BIN" --validate -c "$OUT/leak.yaml" >"$OUT/leak.validate.log" 2>&1 || {
      log "FAIL outrigger --validate rejected bench/out/leak.yaml (see bench/out/leak.validate.log)"; exit 1; }
    start_bg outrigger "$OUT/leak.log" "${VG[@]}" "$OUTRIGGER_BIN" -c "$OUT/leak.yaml" --workers 1
    PORT=$P_OUTRIGGER ;;
  haproxy)
    write_haproxy_cfg
    start_bg haproxy "$OUT/leak.log" "${VG[@]}" haproxy -db -f "$OUT/haproxy.cfg"
    PORT=$P_HAPROXY ;;
  *) die "TARGET must be outrigger or haproxy" ;;
esac
VPID=$LAST_PID
wait_port "$VPID" "$PORT" "$START_TIMEOUT" || {
  log "FAIL $TARGET did not start under valgrind (see bench/out/leak.log, bench/out/valgrind.log)"; exit 1; }

log "leakcheck: $TARGET under valgrind, wrk -t1 -c$CONNS -d${WRK_SECONDS}s, then SIGTERM"
wrk -t1 -c"$CONNS" -d"${WRK_SECONDS}s" --timeout 10s -s "$LIB/wrk-report.lua" "http://127.0.0.1:$PORT/small.txt" >"$OUT/leak.wrk.txt" 2>&1 || true
# Also one 1 MiB POST (the streaming body path).
curl -s -o /dev/null -m 30 --data-binary "@$OUT/post-1m.bin" "http://127.0.0.1:$PORT/upload" || true
line=$(grep '^BENCH ' "$OUT/leak.wrk.txt" || true)
echo "wrk: ${line:-no result (see bench/out/leak.wrk.txt)}"

kill -TERM "$VPID"
rc=""
for _ in $(seq $((EXIT_TIMEOUT * 10))); do
  if ! kill -0 "$VPID" 2>/dev/null; then wait "$VPID" && rc=0 || rc=$?; break; fi
  sleep 0.1
done
if [ -z "$rc" ]; then
  log "FAIL $TARGET did not exit within ${EXIT_TIMEOUT}s of SIGTERM; killing it"
  kill -KILL "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true
  exit 1
fi

lost() {  # KIND -> bytes (0 when valgrind found no block of that kind)
  awk -v k="$1 lost:" '$0 ~ k { sub(/.*lost: /, ""); gsub(/,/, "", $1); print $1; found = 1; exit }
                       END { if (!found) print 0 }' "$OUT/valgrind.log"
}
definite=$(lost definitely); indirect=$(lost indirectly); possible=$(lost possibly)
errors=$(awk '/ERROR SUMMARY:/ { print $4; exit }' "$OUT/valgrind.log")
grep -q 'HEAP SUMMARY' "$OUT/valgrind.log" || { log "FAIL no valgrind summary (see bench/out/valgrind.log)"; exit 1; }
echo "leakcheck: $TARGET exit status $rc; definitely lost: $definite bytes; indirectly lost: $indirect bytes; possibly lost: $possible bytes; valgrind errors: ${errors:-?} (full report: bench/out/valgrind.log)"
# SPEC §2: SIGTERM drains and exits 0. (HAProxy, the self-test, dies by the signal: 143.)
ok_rc=0; [ "$TARGET" = haproxy ] && [ "$rc" = 143 ] && ok_rc=143
if [ "$definite" = 0 ] && [ "$rc" = "$ok_rc" ]; then
  echo "leakcheck: PASS"
else
  echo "leakcheck: FAIL"
  exit 1
fi
