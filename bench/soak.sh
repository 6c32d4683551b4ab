#!/usr/bin/env bash
# Soak test: moderate steady load through one proxy, RSS sampled every INTERVAL s.
#
#   bench/soak.sh                     # 10 minutes through Outrigger
#   SOAK=60 bench/soak.sh             # a short one (DURATION=60s works too)
#   TARGET=haproxy SOAK=60 bench/soak.sh   # same load through HAProxy, for comparison
#
# Env: SOAK / DURATION (600 s) INTERVAL (10 s) CONNS (20) TARGET (outrigger|haproxy|nginx)
#      PATH_=/small.txt (request path) SKIP_SETUP SKIP_BUILD PIN
# Writes bench/out/soak.csv (elapsed_s,rss_kib,hwm_kib,cpu_s) and bench/plots/soak.png.
# Exit: 0 done, 1 the target did not start or wrk failed.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

secs() { case $1 in *m) echo $(( ${1%m} * 60 ));; *s) echo "${1%s}";; *) echo "$1";; esac; }
SOAK_S=$(secs "${SOAK:-${DURATION:-600}}")
INTERVAL=${INTERVAL:-10}
CONNS=${CONNS:-20}
TARGET=${TARGET:-outrigger}
REQ_PATH=${PATH_:-/small.txt}

bench_init
check_ports_free $ALL_PORTS
setup_and_build
write_www
write_origin_conf
start_nginx origin "$OUT/origin.conf" $P_ORIGIN || die "the upstream nginx must start"

case $TARGET in
  outrigger)
    write_outrigger_plain "$OUT/outrigger.yaml" $P_OUTRIGGER $A_OUTRIGGER $P_ORIGIN
    start_outrigger outrigger "$OUT/outrigger.yaml" $P_OUTRIGGER || exit 1
    PORT=$P_OUTRIGGER ;;
  haproxy)
    write_haproxy_cfg; start_haproxy || exit 1; PORT=$P_HAPROXY ;;
  nginx)
    write_nginxproxy_conf
    start_nginx nginx-proxy "$OUT/nginx-proxy.conf" $P_NGINXPROXY || exit 1
    PORT=$P_NGINXPROXY ;;
  *) die "TARGET must be outrigger, haproxy or nginx" ;;
esac
TPID=$LAST_PID
pin 0 "$TPID"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$PORT$REQ_PATH" || true)
[ "$code" = 200 ] || { log "FAIL $TARGET answered HTTP ${code:-none} on $REQ_PATH"; exit 1; }

CSV="$OUT/soak.csv"
echo "elapsed_s,rss_kib,hwm_kib,cpu_s" >"$CSV"
sample() {  # ELAPSED
  local ticks
  ticks=$(cpu_ticks "$TPID")
  echo "$1,$(status_kb VmRSS "$TPID"),$(status_kb VmHWM "$TPID"),$(awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')" >>"$CSV"
}

log "soak: $TARGET for ${SOAK_S}s, wrk -t1 -c$CONNS on $REQ_PATH, RSS every ${INTERVAL}s -> bench/out/soak.csv"
[ "$PINNING" = 1 ] && log "cpu: $TARGET on CPU 0; wrk and the nginx upstream on CPU 1"
sample 0
wcmd=(wrk -t1 -c"$CONNS" -d"${SOAK_S}s" --timeout 5s --latency -s "$LIB/wrk-report.lua" "http://127.0.0.1:$PORT$REQ_PATH")
[ "$PINNING" = 1 ] && wcmd=(taskset -c 1 "${wcmd[@]}")
"${wcmd[@]}" >"$OUT/soak.wrk.txt" 2>&1 &
WRK_PID=$!
STARTED_PIDS+=("$WRK_PID")
start=$(date +%s)
next=$INTERVAL
while kill -0 "$WRK_PID" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  if [ "$now" -ge "$next" ]; then
    kill -0 "$TPID" 2>/dev/null || { log "FAIL $TARGET exited during the soak (see bench/out/)"; break; }
    sample "$now"
    next=$((next + INTERVAL))
  fi
  sleep 0.5
done
wait "$WRK_PID" || true
kill -0 "$TPID" 2>/dev/null && sample $(( $(date +%s) - start ))

line=$(grep '^BENCH ' "$OUT/soak.wrk.txt" || true)
[ -n "$line" ] || { log "FAIL wrk produced no result (see bench/out/soak.wrk.txt)"; exit 1; }

# The t=0 sample is idle; "first" is the first sample under load.
report=$(awk -F, -v bench="$line" '
  NR == 1 { next }
  NR == 2 { idle = $2; next }
  { n++; if (n == 1) first = $2; last = $2; if ($2 > max) max = $2; hwm = $3; cpu = $4; t = $1 }
  END {
    split(bench, f, " "); for (i in f) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
    err = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
    printf "requests %d in %ds (%.0f req/s), errors %d, p99 %.2f ms, p99.9 %.2f ms\n",
      v["requests"], t, v["requests"] / (v["duration_us"] / 1e6), err, v["p99"] / 1000, v["p999"] / 1000
    printf "RSS idle %.1f MiB; first under load %.1f MiB; last %.1f MiB; max %.1f MiB; VmHWM %.1f MiB\n",
      idle / 1024, first / 1024, last / 1024, max / 1024, hwm / 1024
    printf "growth first->last %+.1f MiB (%+.1f%%); max growth over first %+.1f MiB; CPU %.1f s (%.2f s per 100k req)\n",
      (last - first) / 1024, first ? 100 * (last - first) / first : 0, (max - first) / 1024,
      cpu, v["requests"] ? cpu / v["requests"] * 100000 : 0
  }' "$CSV")
echo "soak: $TARGET, ${SOAK_S}s, wrk -t1 -c$CONNS"
echo "$report"
echo "soak: $TARGET ${SOAK_S}s -c$CONNS"$'\n'"$report" >"$OUT/soak.txt"

gnuplot 2>"$OUT/gnuplot.log" <<EOF || log "WARNING: gnuplot failed (see bench/out/gnuplot.log)"
set terminal pngcairo size 900,450 noenhanced
set output "$PLOTS/soak.png"
set datafile separator ","
set title "Soak: $TARGET RSS under wrk -c$CONNS for ${SOAK_S}s"
set xlabel "elapsed (s)"
set ylabel "MiB"
set yrange [0:*]
set grid
set key bottom right
plot "$CSV" using 1:(\$2/1024) every ::1 with linespoints title "VmRSS", \
     "$CSV" using 1:(\$3/1024) every ::1 with lines dashtype 2 title "VmHWM"
EOF
log "wrote bench/out/soak.csv, bench/out/soak.txt, bench/plots/soak.png"
