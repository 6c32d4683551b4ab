#!/usr/bin/env bash
# The canary run (README, issue 19): the demo topology with config/demo/canary/edge.yaml
# (on ports of its own), three clients asking the edge for /healthz as users of random
# x-user-id; shortener v2 starts at 10% and the edge promotes it step by step while its
# analysis passes; then v2's sidecar starts failing 30% of its requests (a fault.abort
# added by a reload), the operator puts v2 back at 10% through the admin API, and the
# edge rolls it back by itself. Every half second: the weights and the analysis state
# from GET /canary, and what the clients got. Writes bench/CANARY.md and
# bench/plots/canary.png.
#
#   bench/canary.sh            # PHASE_SECONDS=40: the longest each phase may take
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE=${PHASE_SECONDS:-40}
BIN=build-release
[ -x $BIN/proxy/outrigger ] || { echo "canary: build first (cmake --build $BIN)" >&2; exit 1; }
OUT=bench/out/canary; rm -rf "$OUT"; mkdir -p "$OUT"
# demo port -> this script's port
map() { sed -e 's/127\.0\.0\.1:8080/127.0.0.1:28080/g; s/127\.0\.0\.1:800\([123]\)/127.0.0.1:2800\1/g' \
            -e 's/127\.0\.0\.1:900\([123]\)/127.0.0.1:2900\1/g; s/127\.0\.0\.1:1500\([0-3]\)/127.0.0.1:2500\1/g' \
            -e 's/127\.0\.0\.1:2479/127.0.0.1:22379/g' "$1"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
. bench/lib/etcd.sh
etcd_start 22379 22380   # the sidecars register here, the edge finds them here
up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0; sleep 0.05; done; return 1; }
for i in 1 2 3; do
  $BIN/shortener/shortener --listen 127.0.0.1:2900$i --db "$OUT/links.db" --base-url http://127.0.0.1:28080 \
    --label v$([ "$i" = 3 ] && echo 2 || echo 1) >"$OUT/shortener-$i.log" 2>&1 &
  pids+=($!)
  up 2900$i
done
for f in sidecar-1 sidecar-2 sidecar-3; do
  map config/demo/$f.yaml >"$OUT/$f.yaml"
  $BIN/proxy/outrigger -c "$OUT/$f.yaml" >"$OUT/$f.log" 2>&1 & pids+=($!)
  eval "pid_${f/-/_}=$!"
done
map config/demo/canary/edge.yaml >"$OUT/edge.yaml"
$BIN/proxy/outrigger -c "$OUT/edge.yaml" >"$OUT/edge.log" 2>&1 & pids+=($!)
up 28001; up 28002; up 28003; up 28080
etcd_wait_discovered 25000 shortener-v1 2; etcd_wait_discovered 25000 shortener-v2 1
T0=$(date +%s%N)
now_ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }
# The clients: one line per answer: milliseconds, status, the shortener's version.
for c in 1 2 3; do
  ( while :; do
      r=$(curl -s -o /dev/null -m 3 -H "x-user-id: user-$RANDOM" -w '%{http_code} %header{x-shortener-version}' \
          http://127.0.0.1:28080/healthz || true)
      echo "$(now_ms) ${r:-000 -}"
    done >"$OUT/client-$c.txt" ) & pids+=($!)
done
canary() { curl -s http://127.0.0.1:25000/canary; }
state_of() { sed -n 's/.*"analysis":{"state":"\([a-z_]*\)".*/\1/p' <<<"$1"; }
w_of() { sed -n "s/.*\"weights\":{[^}]*\"$2\":\([0-9]*\).*/\1/p" <<<"$1"; }
printf 'ms\tv1\tv2\tstate\n' >"$OUT/weights.tsv"
sample() { local d; d=$(canary); printf '%s\t%s\t%s\t%s\n' "$(now_ms)" "$(w_of "$d" shortener-v1)" \
  "$(w_of "$d" shortener-v2)" "$(state_of "$d")" >>"$OUT/weights.tsv"; LAST=$d; }
until_state() {  # STATE: sample every 0.5 s until GET /canary shows it
  for _ in $(seq $((PHASE * 2))); do
    sleep 0.5; sample
    [ "$(state_of "$LAST")" = "$1" ] && return 0
  done
  echo "canary: no state $1 after $PHASE s: $LAST" >&2
  return 1
}
until_state promoted
PROMOTED_DOC=$LAST
T_PROMOTED=$(now_ms)
for _ in 1 2 3 4; do sleep 0.5; sample; done
# v2 breaks: its sidecar answers 503 to 30% of requests (a reload adds the fault)
T_FAULT=$(now_ms)
sed -i 's|      - { name: app-3, match: { prefix: / }, cluster: local, timeout: 2s }|      - { name: app-3, match: { prefix: / }, cluster: local, timeout: 2s, fault: { abort: { status: 503, percent: 30 } } }|' \
  "$OUT/sidecar-3.yaml"
grep -q 'fault:' "$OUT/sidecar-3.yaml" || { echo "canary: could not add the fault to sidecar 3" >&2; exit 1; }
kill -HUP "$pid_sidecar_3"
POST_CMD="curl -s -X POST http://127.0.0.1:25000/canary/shortener -d '{\"weights\": {\"shortener-v1\": 90, \"shortener-v2\": 10}}'"
POST_ANSWER=$(eval "$POST_CMD")
until_state rolled_back
ROLLED_DOC=$LAST
for _ in 1 2 3 4; do sleep 0.5; sample; done
T_END=$(now_ms)
# What the clients got, per half second: answers, v2's share of them, 5xx.
cat "$OUT"/client-*.txt | awk -v end="$T_END" '$1 < end { s = int($1 / 500); n[s]++; if ($3 == "v2") v2[s]++; if ($2 ~ /^5/) e[s]++; if (s > m) m = s }
  END { for (i = 0; i <= m; i++) printf "%.1f\t%d\t%.3f\t%d\n", i / 2, n[i], n[i] ? v2[i] / n[i] : 0, e[i] }' >"$OUT/clients.tsv"
total=$(cat "$OUT"/client-*.txt | awk -v end="$T_END" '$1 < end' | wc -l)
bad=$(cat "$OUT"/client-*.txt | awk -v end="$T_END" '$1 < end && $2 !~ /^2/' | wc -l)
pretty() { sed -e 's/,"routes"/,\n"routes"/; s/"analysis":/\n   "analysis":/; s/"last":/\n     "last":/' <<<"$1"; }
{
  echo "# A canary that promotes or rolls back by itself"
  echo
  echo "\`bench/canary.sh\` on $(date -u +%Y-%m-%d): the demo topology with \`config/demo/canary/edge.yaml\` (analysis every 2 s with at least 10 requests a side, promotion by 20 points every 4 s up to 90%, rollback on failure), ports moved to 28xxx/29xxx/25xxx. Three clients ask the edge for \`/healthz\` back to back, each request as a random \`x-user-id\` (curl, one request at a time each); the shortener behind each side names its version in \`x-shortener-version\`."
  echo
  echo "1. v2 starts at 10% and is promoted step by step while its analysis passes; at $((T_PROMOTED / 1000)) s \`GET /canary\` says:"
  echo
  echo '```'
  pretty "$PROMOTED_DOC"
  echo '```'
  echo
  echo "2. At $((T_FAULT / 1000)) s v2's sidecar starts answering 503 to 30% of its requests (\`fault: { abort: { status: 503, percent: 30 } }\` added to its route, SIGHUP), and the operator puts v2 back at 10%:"
  echo
  echo '```'
  echo "\$ $POST_CMD" | sed 's/25000/15000/'
  pretty "$POST_ANSWER"
  echo '```'
  echo
  echo "   The edge rolls v2 back by itself at the end of its next interval; \`GET /canary\` then:"
  echo
  echo '```'
  pretty "$ROLLED_DOC"
  echo '```'
  echo
  echo "3. The edge's log lines about the canary:"
  echo
  echo '```'
  grep 'canary' "$OUT/edge.log" | sed 's/^[^ ]* //'
  echo '```'
  echo
  echo "The clients made $total requests; $bad of them got something other than a 2xx (v2's 503s before the rollback). Per half second: the weights and analysis state from \`GET /canary\`, and the share of the clients' answers that came from v2:"
  echo
  echo "![v2's share over time](plots/canary.png)"
  echo
  echo "| ms | v1 weight | v2 weight | state |"
  echo "|--:|--:|--:|---|"
  tail -n +2 "$OUT/weights.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
} >bench/CANARY.md
gnuplot <<GP
set terminal png size 900,420
set output "bench/plots/canary.png"
set title "v2 promoted while it passes, rolled back when it fails (503s from ${T_FAULT} ms)"
set key outside right top
set xlabel "second"; set ylabel "v2's share (%)"; set yrange [0:100]
set y2label "5xx answers per half second"; set y2tics; set ytics nomirror
set key outside right
plot "$OUT/weights.tsv" using (\$1/1000):(100*\$3/(\$2+\$3)) every ::1 with steps lw 2 title "v2's weight share", \
     "$OUT/clients.tsv" using 1:(100*\$3) with lines title "v2's share of answers", \
     "" using 1:4 axes x1y2 with impulses title "5xx"
GP
echo "canary: bench/CANARY.md, bench/plots/canary.png"
