# etcd for the scripts that run the demo topology (bench/timeline.sh, bench/canary.sh):
# the demo's configurations register in, and discover from, an etcd (SPEC §12).
# Sourced. Needs $OUT; adds the PID to the caller's `pids` (killed by PID on exit).

# etcd_start CLIENT_PORT PEER_PORT: one member, data in $OUT/etcd, until it is healthy.
etcd_start() {
  rm -rf "$OUT/etcd"
  etcd --name bench --data-dir "$OUT/etcd" \
    --listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
    --listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
    --initial-cluster "bench=http://127.0.0.1:$2" --initial-cluster-state new >"$OUT/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  echo "etcd did not start (see $OUT/etcd.log)" >&2
  return 1
}

# etcd_wait_discovered ADMIN_PORT CLUSTER N: until that outrigger routes CLUSTER to N endpoints.
etcd_wait_discovered() {
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$1/metrics" | grep -q "^outrigger_discovery_endpoints{cluster=\"$2\"} $3\$" && return 0
    sleep 0.1
  done
  echo "the outrigger on admin :$1 never found $3 endpoints for $2" >&2
  return 1
}
