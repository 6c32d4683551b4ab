#!/usr/bin/env bash
# The failure timeline (README): the demo topology (config/demo/, on ports of its own)
# under a steady client, one of the three shortener replicas killed at T_FAIL seconds and
# started again at T_HEAL; every second, what the client saw (answers by status) and
# what the edge's breaker and health check said of the failed replica's sidecar.
# Writes bench/TIMELINE.md and bench/plots/timeline.png.
#
#   bench/timeline.sh            # SECONDS_TOTAL=30 T_FAIL=5 T_HEAL=17
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${SECONDS_TOTAL:-30}; T_FAIL=${T_FAIL:-5}; T_HEAL=${T_HEAL:-17}
BIN=build-release
[ -x $BIN/proxy/outrigger ] || { echo "timeline: build first (cmake --build $BIN)" >&2; exit 1; }
OUT=bench/out/timeline; rm -rf "$OUT"; mkdir -p "$OUT"
# demo port -> this script's port
map() { sed -e 's/127\.0\.0\.1:8080/127.0.0.1:28080/g; s/127\.0\.0\.1:800\([123]\)/127.0.0.1:2800\1/g' \
            -e 's/127\.0\.0\.1:900\([123]\)/127.0.0.1:2900\1/g; s/127\.0\.0\.1:1500\([0-3]\)/127.0.0.1:2500\1/g' \
            -e 's/127\.0\.0\.1:2479/127.0.0.1:22379/g' "$1"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. bench/lib/etcd.sh
etcd_start 22379 22380   # the sidecars register here, the edge finds them here
start_app() {  # N
  $BIN/shortener/shortener --listen 127.0.0.1:2900$1 --db "$OUT/links.db" --base-url http://127.0.0.1:28080 \
    --label v$([ "$1" = 3 ] && echo 2 || echo 1) >>"$OUT/shortener-$1.log" 2>&1 &
  APP_PID=$!
}
up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0; sleep 0.05; done; return 1; }
for i in 1 2 3; do start_app $i; pids+=($APP_PID); eval "app$i=$APP_PID"; up 2900$i; done
for f in sidecar-1 sidecar-2 sidecar-3 edge; do
  map config/demo/$f.yaml >"$OUT/$f.yaml"
  $BIN/proxy/outrigger -c "$OUT/$f.yaml" >"$OUT/$f.log" 2>&1 & pids+=($!)
done
up 28001; up 28002; up 28003; up 28080
etcd_wait_discovered 25000 shortener-v1 2; etcd_wait_discovered 25000 shortener-v2 1
code=$(curl -s -X POST http://127.0.0.1:28080/api/links -d '{"url":"https://example.com/t"}' | sed -n 's/.*"code": *"\([^"]*\)".*/\1/p')
EP=127.0.0.1:28002  # sidecar 2, in front of the replica that fails
# The client: GET /CODE back to back, one line per answer: second status
( t0=$(date +%s%N); while :; do
    s=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:28080/$code" || true)
    echo "$(( ($(date +%s%N) - t0) / 1000000000 )) ${s:-000}"
  done >"$OUT/client.txt" ) & client=$!; pids+=($client)
printf 'second\tanswered\t5xx\tother\tbreaker\thealthy\n' >"$OUT/timeline.tsv"
for s in $(seq 0 $((TOTAL - 1))); do
  [ "$s" = "$T_FAIL" ] && kill -KILL "$app2"
  if [ "$s" = "$T_HEAL" ]; then start_app 2; pids+=($APP_PID); fi
  sleep 1
  m=$(curl -s http://127.0.0.1:25000/metrics)
  br=$(sed -n "s/^outrigger_circuit_breaker_state{cluster=\"shortener-v1\",endpoint=\"$EP\"} //p" <<<"$m")
  he=$(sed -n "s/^outrigger_endpoint_healthy{cluster=\"shortener-v1\",endpoint=\"$EP\"} //p" <<<"$m")
  awk -v s="$s" -v br="${br:--}" -v he="${he:--}" '$1 == s { if ($2 ~ /^[23]/) ok++; else if ($2 ~ /^5/) bad++; else other++ }
    END { printf "%d\t%d\t%d\t%d\t%s\t%s\n", s, ok, bad, other, br, he }' "$OUT/client.txt" >>"$OUT/timeline.tsv"
done
kill "$client" 2>/dev/null || true
names=(closed open half-open)
{
  echo "# The failure timeline"
  echo
  echo "\`bench/timeline.sh\` on $(date -u +%Y-%m-%d): the demo topology, a client asking the edge for one link's redirect back to back (curl, one request at a time), shortener replica 2 killed (SIGKILL) at second $T_FAIL and started again at second $T_HEAL. Per second: the client's answers by status, and what the edge says of sidecar 2 ($EP): its breaker (\`outrigger_circuit_breaker_state\`) and health check (\`outrigger_endpoint_healthy\`). Edge settings: config/demo/edge.yaml (5 failures in a row open the breaker for 5 s; 3 failed probes a second apart take the endpoint out, 2 passing bring it back)."
  echo
  echo "| second | redirects (302) | 5xx | other (no answer in 3 s) | breaker | healthy |"
  echo "|--:|--:|--:|--:|---|---|"
  tail -n +2 "$OUT/timeline.tsv" | while IFS=$'\t' read -r s ok bad other br he; do
    b=$br; [[ "$br" =~ ^[0-2]$ ]] && b=${names[$br]}
    echo "| $s | $ok | $bad | $other | $b | $he |"
  done
} >bench/TIMELINE.md
gnuplot <<GP
set terminal png size 900,420
set output "bench/plots/timeline.png"
set title "Replica 2 killed at ${T_FAIL}s, restarted at ${T_HEAL}s: client answers per second"
set xlabel "second"; set ylabel "answers"; set y2label "breaker (0 closed, 1 open, 2 half-open) / healthy"
set y2range [-0.1:2.5]; set ytics nomirror; set y2tics 0,1,2
set key outside right
plot "$OUT/timeline.tsv" using 1:2 every ::1 with lines lw 2 title "302 (answered)", \
     "" using 1:3 every ::1 with lines lw 2 title "5xx", \
     "" using 1:5 every ::1 axes x1y2 with steps title "breaker", \
     "" using 1:6 every ::1 axes x1y2 with steps dt 2 title "healthy"
GP
echo "timeline: bench/TIMELINE.md, bench/plots/timeline.png"
