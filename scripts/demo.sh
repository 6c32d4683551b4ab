#!/usr/bin/env bash
# Sets up, builds (Release) and runs the demo topology of SPEC §1 on loopback:
#
#   client -> outrigger edge :8080 --90%--> sidecar :8001 -> shortener v1 :9001
#                                  \------> sidecar :8002 -> shortener v1 :9002
#                                   \-10%-> sidecar :8003 -> shortener v2 :9003 (canary)
#
# The three shorteners share one SQLite file. Ctrl-C stops everything (SIGTERM,
# so every process drains). DEMO_SECONDS=N stops by itself after N seconds.
# CHAOS=1 runs config/demo/chaos/ instead: the sidecars drop 20% of the answers after
# the app did the work, and the edge retries POSTs safely with idempotency keys.
# CANARY=1 runs the edge of config/demo/canary/ instead: v2 is promoted from 10% while
# its analysis passes, and rolled back by itself if it starts failing (GET :15000/canary).
# Every sidecar registers its shortener in a one-member etcd (Debian's etcd-server, on
# :2479, data in the run directory, stopped by PID) and the edge discovers them there by
# label: a fourth instance joins with its sidecar alone (README, "Scaling out").
# Every hop traces every request and sends its spans to :9411: the demo starts
# span-sink there (spans as JSON lines in $RUN/spans.jsonl), unless something already
# listens on it (a Zipkin or a Jaeger, which then draws the traces).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

scripts/setup.sh
build build-release Release

for p in 8080 8001 8002 8003 9001 9002 9003 15000 15001 15002 15003 2479 2480; do
  port_free "$p" || { echo "demo: port $p is in use; stop what uses it first" >&2; exit 1; }
done

CFG=config/demo
[ "${CHAOS:-0}" = 1 ] && CFG=config/demo/chaos
EDGE=$CFG/edge.yaml
[ "${CANARY:-0}" = 1 ] && EDGE=config/demo/canary/edge.yaml
RUN=$(mktemp -d /tmp/outrigger-demo.XXXXXX)
pids=()
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping (SIGTERM, each process drains)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped; logs were in $RUN"
}
trap stop_all EXIT INT TERM

# The registry: one etcd member on loopback, in the run directory.
etcd --name demo --data-dir "$RUN/etcd" \
  --listen-client-urls http://127.0.0.1:2479 --advertise-client-urls http://127.0.0.1:2479 \
  --listen-peer-urls http://127.0.0.1:2480 --initial-advertise-peer-urls http://127.0.0.1:2480 \
  --initial-cluster demo=http://127.0.0.1:2480 --initial-cluster-state new \
  --logger zap --log-outputs "$RUN/etcd.log" 2>>"$RUN/etcd.log" &
pids+=($!)
wait_port 2479
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:2479/health | grep -q '"health":"true"' && break
  sleep 0.1
done

SPANS="$RUN/spans.jsonl"
if port_free 9411; then
  build-release/span-sink --listen 127.0.0.1:9411 --out "$SPANS" 2>"$RUN/span-sink.log" &
  pids+=($!)
  wait_port 9411
  SPANS_AT="span-sink on :9411, one span per line in $SPANS"
else
  SPANS_AT="the collector already on :9411 (Zipkin or Jaeger: open its UI)"
fi

for i in 1 2 3; do
  label=v1; [ "$i" = 3 ] && label=v2
  build-release/shortener/shortener --listen 127.0.0.1:900$i --db "$RUN/links.db" \
    --base-url http://127.0.0.1:8080 --label $label >"$RUN/shortener-$i.log" 2>&1 &
  pids+=($!)
  wait_port 900$i   # the first one creates the database; the others open it
done
for i in 1 2 3; do
  build-release/proxy/outrigger -c "$CFG/sidecar-$i.yaml" >"$RUN/sidecar-$i.log" 2>&1 &
  pids+=($!)
done
build-release/proxy/outrigger -c "$EDGE" >"$RUN/edge.log" 2>&1 &
pids+=($!)
for p in 8001 8002 8003 8080; do wait_port "$p"; done
# The edge has found the three instances in etcd (within a second of their sidecars).
for _ in $(seq 100); do
  n=$(curl -s http://127.0.0.1:15000/metrics | grep -c '^outrigger_discovery_endpoints{.*} [1-9]' || true)
  [ "$n" -ge 2 ] && break
  sleep 0.1
done

created=$(curl -s -X POST http://127.0.0.1:8080/api/links -d '{"url":"https://example.com/hello"}')
code=$(printf '%s' "$created" | sed -n 's/.*"code": *"\([^"]*\)".*/\1/p')
cat <<MSG

Outrigger demo is running (logs in $RUN).
  edge      http://127.0.0.1:8080   admin http://127.0.0.1:15000
  sidecars  :8001 :8002 :8003       admin :15001 :15002 :15003
  shortener :9001 :9002 (v1) :9003 (v2, canary), one SQLite file
  etcd      http://127.0.0.1:2479   (the registry: each sidecar's record, the edge watches)

A link was created through the edge:
  $created

Try:
  curl -s -X POST http://127.0.0.1:8080/api/links -d '{"url":"https://example.com/"}'
  curl -si http://127.0.0.1:8080/$code
  curl -s http://127.0.0.1:8080/api/links/$code
  for i in \$(seq 100); do curl -s -o /dev/null -w '%header{x-shortener-version}\\n' http://127.0.0.1:8080/healthz; done | sort | uniq -c
  curl -s http://127.0.0.1:15000/metrics | grep outrigger_requests_total
  curl -s http://127.0.0.1:15000/clusters
  curl -s http://127.0.0.1:2479/v3/kv/range -d '{"key":"L291dHJpZ2dlci9zZXJ2aWNlcy8=","range_end":"L291dHJpZ2dlci9zZXJ2aWNlczA="}'   # the records (base64)
  curl -s http://127.0.0.1:15000/canary
  curl -s -X POST http://127.0.0.1:15000/canary/shortener -d '{"weights": {"shortener-v2": 25}}'

Traces: every hop sends its spans to $SPANS_AT.
One request's trace (a trace id of your choosing; without a traceparent the edge starts one):
  tid=4bf92f3577b34da6a3ce929d0e0e4736
  curl -s -o /dev/null http://127.0.0.1:8080/$code -H "traceparent: 00-\$tid-00f067aa0ba902b7-01"
  sleep 0.5; grep \$tid $SPANS

Scale out: a fourth v1 instance and its sidecar register, and the edge sends them
traffic within a second (no other file changes):
  build-release/shortener/shortener --listen 127.0.0.1:9004 --db $RUN/links.db --base-url http://127.0.0.1:8080 --label v1 &
  build-release/proxy/outrigger -c config/demo/sidecar-4.yaml &
  curl -s http://127.0.0.1:15000/clusters | grep -o '"address":"127.0.0.1:800[0-9]"' | sort | uniq -c

Ctrl-C stops everything.
MSG

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait -n "${pids[@]}" || true   # until Ctrl-C, or until a process dies
  echo "demo: a process exited; see $RUN" >&2
fi
