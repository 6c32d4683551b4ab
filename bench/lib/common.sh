# Shared helpers for bench/run.sh, bench/soak.sh and bench/leakcheck.sh.
# Sourced, not executed. Bash only (no python): coreutils, awk, procps, iproute2.
#
# Every process started through start_bg is recorded in STARTED_PIDS and is
# killed by PID (never by name) from the EXIT/INT/TERM trap installed by
# bench_init.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
OUT="$BENCH_DIR/out"
LIB="$BENCH_DIR/lib"
PLOTS="${PLOTS_DIR:-$BENCH_DIR/plots}"  # PLOTS_DIR/RESULTS_MD: elsewhere for smoke runs
OUTRIGGER_BIN=${OUTRIGGER_BIN:-$ROOT_DIR/build-release/proxy/outrigger}
SHORTENER_BIN=${SHORTENER_BIN:-$ROOT_DIR/build-release/shortener/shortener}

# Fixed loopback ports (18xxx data, 19xxx admin).
P_ORIGIN=18080      # nginx upstream serving fixed bodies
P_NGINX302=18085    # nginx answering `return 302` (redirect case)
P_SHORTENER=18090   # the real shortener
P_OUTRIGGER=18001   # outrigger, features off
P_HAPROXY=18002
P_NGINXPROXY=18003
P_EDGE=18011        # demo topology: edge outrigger -> sidecar outrigger -> shortener
P_SIDECAR=18012
P_ORFEAT=18021      # outrigger, all features on
P_ORROUTES=18025    # outrigger, the features-on routes without retry and idempotency
P_ORSTICKY=18022    # outrigger, a sticky canary split instead of a cluster
P_ORTRACE=18023     # outrigger, tracing (sample 1.0, Zipkin export) and the access log on
P_ORDISC=18024      # outrigger, its cluster discovered in etcd instead of listed
P_ETCD=18026        # etcd (one member) for the discovery case; its peer port next
P_ETCD_PEER=18027
P_H2O=18004         # h2o as reverse proxy
P_ORIGIN_STATUS=18081  # the upstream nginx's stub_status (connections accepted)
# The same upstream on one port per peer proxy: each proxy's pool then has the
# ~28,000 ephemeral ports towards its own port to itself (after the sweep's 10,000
# connections every proxy keeps thousands pooled).
P_ORIGIN_HAPROXY=18086
P_ORIGIN_NGINX=18087
P_ORIGIN_H2O=18088
A_OUTRIGGER=19901
A_EDGE=19911
A_SIDECAR=19912
A_ORFEAT=19921
A_ORROUTES=19925
A_ORSTICKY=19922
A_ORTRACE=19923
A_ORDISC=19924
A_LEAK=19931
ALL_PORTS="$P_ORIGIN $P_ORIGIN_STATUS $P_ORIGIN_HAPROXY $P_ORIGIN_NGINX $P_ORIGIN_H2O $P_H2O $P_NGINX302 $P_SHORTENER $P_OUTRIGGER $P_HAPROXY $P_NGINXPROXY $P_EDGE $P_SIDECAR $P_ORFEAT $P_ORROUTES $P_ORSTICKY $P_ORTRACE $P_ORDISC $P_ETCD $P_ETCD_PEER $A_OUTRIGGER $A_EDGE $A_SIDECAR $A_ORFEAT $A_ORROUTES $A_ORSTICKY $A_ORTRACE $A_ORDISC $A_LEAK"

STARTED_PIDS=()
CLK_TCK=$(getconf CLK_TCK)

log()  { printf '%s\n' "$*" >&2; }
# skip MSG : print "SKIP MSG", remember it in SKIP_MSG, return 1.
skip() { SKIP_MSG="$*"; log "SKIP $*"; return 1; }
die()  { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  cap_destroy
  for p in "${STARTED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give them up to 3 s to exit (nginx masters take their workers down), then KILL.
  local i
  for i in $(seq 30); do
    local alive=0
    for p in "${STARTED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${STARTED_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${STARTED_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${NGX_DIR:-}" ]; then rm -rf "$NGX_DIR"; fi
  exit "$rc"
}

bench_init() {
  mkdir -p "$OUT" "$PLOTS"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # nginx's workers drop root for www-data, which cannot read a clone under /root
  # (mode 700): the files nginx serves and its temp paths live in a directory any
  # user can traverse, removed again by cleanup.
  NGX_DIR=$(mktemp -d /tmp/outrigger-bench-nginx.XXXXXX)
  chmod 755 "$NGX_DIR"
  # The connection sweep needs 10,000 client connections plus the proxy's upstream
  # ones: as many descriptors as the hard limit allows.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 2>/dev/null || true
  NPROC=$(nproc)
  if [ "${PIN:-1}" = 1 ] && [ "$NPROC" -ge 2 ]; then PINNING=1; else PINNING=0; fi
  # The harness itself (samplers, curl, awk) stays off the proxy's core.
  if [ "$PINNING" = 1 ]; then taskset -pc 1 $$ >/dev/null 2>&1 || true; fi
}

# port_listening PORT -> 0 if something listens on 127.0.0.1:PORT (or any addr)
port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

check_ports_free() {
  local busy="" p
  for p in "$@"; do port_listening "$p" && busy="$busy $p"; done
  if [ -n "$busy" ]; then
    ss -ltnp 2>/dev/null | grep -E ":($(echo $busy | tr ' ' '|'))\b" >&2 || true
    die "ports already in use:$busy (another bench still running?)"
  fi
}

# start_bg NAME LOGFILE CMD... : start in background (on CPU 1 when pinning),
# record the PID; sets LAST_PID.
start_bg() {
  local name=$1 logf=$2; shift 2
  if [ "$PINNING" = 1 ]; then
    taskset -c 1 "$@" >"$logf" 2>&1 &
  else
    "$@" >"$logf" 2>&1 &
  fi
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
}

# wait_port PID PORT TIMEOUT_S : 0 when PORT listens while PID lives.
wait_port() {
  local pid=$1 port=$2 t=${3:-5} i
  for i in $(seq $((t * 20))); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_listening "$port" && return 0
    sleep 0.05
  done
  return 1
}

# stop_pid PID : TERM then wait (up to 10 s), then KILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Process tree (pid and its children; nginx: master + worker).
pid_tree() {
  local p
  for p in "$@"; do
    echo "$p"
    pgrep -P "$p" 2>/dev/null || true
  done
}

# pin CPU PIDS... : move every thread of every given process to CPU.
pin() {
  [ "$PINNING" = 1 ] || return 0
  local cpu=$1 p; shift
  for p in $(pid_tree "$@"); do taskset -a -pc "$cpu" "$p" >/dev/null 2>&1 || true; done
}

# cpu_ticks PIDS... : sum of utime+stime (clock ticks) over the process trees.
cpu_ticks() {
  local total=0 p f
  for p in $(pid_tree "$@"); do
    f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    f=${f##*) }   # fields after "comm)", starting at field 3 (state)
    # utime and stime are fields 14 and 15 overall = 12 and 13 here
    total=$((total + $(echo "$f" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# ctx_switches PIDS... : voluntary + involuntary context switches so far, over
# every thread of the process trees.
ctx_switches() {
  local p
  for p in $(pid_tree "$@"); do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '$1 ~ /^(non)?voluntary_ctxt_switches:$/ { n += $2 } END { print n + 0 }'
}

# start_perf OUTFILE PIDS... : count system calls of the process trees with perf
# (tracepoint raw_syscalls:sys_enter) until stop_perf; sets PERF_PID, or leaves it
# empty when perf cannot attach.
start_perf() {
  local outf=$1; shift
  local list
  list=$(pid_tree "$@" | paste -sd, -)
  PERF_PID=""
  command -v perf >/dev/null 2>&1 || return 0
  if [ "$PINNING" = 1 ]; then
    taskset -c 1 perf stat -x, -e raw_syscalls:sys_enter -p "$list" -o "$outf" 2>/dev/null &
  else
    perf stat -x, -e raw_syscalls:sys_enter -p "$list" -o "$outf" 2>/dev/null &
  fi
  PERF_PID=$!
  STARTED_PIDS+=("$PERF_PID")
}
# stop_perf OUTFILE : stops the counter started by start_perf (PERF_PID) and sets
# PERF_COUNT to its count (-1: none). Not in a subshell: it waits for perf to write.
stop_perf() {
  PERF_COUNT=-1
  [ -n "${PERF_PID:-}" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_COUNT=$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ { n = $1 } END { print (n ~ /^[0-9]+$/) ? n : -1 }' "$1" 2>/dev/null || echo -1)
}

# status_kb FIELD PIDS... : sum of VmRSS or VmHWM (KiB) over the process trees.
status_kb() {
  local field=$1 total=0 p v; shift
  for p in $(pid_tree "$@"); do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# hwm_reset PIDS... : reset the peak RSS (VmHWM) of every process of the trees to its
# current RSS (`echo 5 > /proc/PID/clear_refs`), so that VmHWM read after a run is
# that run's peak, measured by the kernel without a sampler stealing a CPU from wrk
# or the pod. Prints 1 if every reset worked, 0 if not (then VmHWM is the lifetime peak).
hwm_reset() {
  local p ok=1
  for p in $(pid_tree "$@"); do echo 5 2>/dev/null >"/proc/$p/clear_refs" || ok=0; done
  echo "$ok"
}

# upstream_port TARGET : the upstream port the proxy TARGET connects to.
upstream_port() {
  case $1 in
    haproxy) echo "$P_ORIGIN_HAPROXY" ;; nginx) echo "$P_ORIGIN_NGINX" ;; h2o) echo "$P_ORIGIN_H2O" ;;
    *) echo "$P_ORIGIN" ;;
  esac
}

# own_conns PORT PIDS... : connections the process trees hold established to PORT.
own_conns() {
  local port=$1 re; shift
  re=$(pid_tree "$@" | paste -sd'|' -)
  ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -cE "pid=($re)," || true
}


# origin_accepts : connections the upstream nginx has accepted so far (stub_status,
# on its own port so that asking does not count against the data port).
origin_accepts() {
  curl -s -m 2 "http://127.0.0.1:$P_ORIGIN_STATUS/status" 2>/dev/null |
    awk 'prev ~ /accepts/ { print $1; exit } { prev = $0 }'
}

# ---------------------------------------------------------------- CPU cap
# A cgroup with a CFS quota holds the process(es) under test to a fixed share of
# a core, so that they, not wrk or the upstream, are the bottleneck. cgroup v1
# (a "cpu" hierarchy) or v2 (cpu.max at the root); needs root. CAP_DIR is the
# capped group, CAP_HOME the group the bench's processes come from.
CAP_DIR=""; CAP_HOME=""; CAP_PERIOD_US=10000

# cap_create PERCENT : 0 and CAP_DIR set, or a SKIP line and 1.
cap_create() {
  local quota=$(( CAP_PERIOD_US * $1 / 100 )) rel
  [ -n "$CAP_DIR" ] && return 0
  if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    rel=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3; exit }' /proc/self/cgroup)
    CAP_HOME=/sys/fs/cgroup/cpu${rel%/}
    CAP_DIR=/sys/fs/cgroup/cpu/outrigger-bench.$$
    if mkdir "$CAP_DIR" 2>/dev/null &&
       echo "$CAP_PERIOD_US" >"$CAP_DIR/cpu.cfs_period_us" 2>/dev/null &&
       echo "$quota" >"$CAP_DIR/cpu.cfs_quota_us" 2>/dev/null; then
      return 0
    fi
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CAP_HOME=/sys/fs/cgroup$(awk -F: '$1 == 0 { print $3; exit }' /proc/self/cgroup)
    CAP_HOME=${CAP_HOME%/}
    CAP_DIR=/sys/fs/cgroup/outrigger-bench.$$
    if { grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control ||
         echo +cpu >/sys/fs/cgroup/cgroup.subtree_control; } 2>/dev/null &&
       mkdir "$CAP_DIR" 2>/dev/null &&
       echo "$quota $CAP_PERIOD_US" >"$CAP_DIR/cpu.max" 2>/dev/null; then
      return 0
    fi
  fi
  [ -n "$CAP_DIR" ] && rmdir "$CAP_DIR" 2>/dev/null
  CAP_DIR=""
  skip "no writable CPU cgroup to cap the proxies with (needs root and the cgroup cpu controller)"
}

# cap_enter PIDS / cap_leave PIDS : move process trees into / out of the cap.
cap_move() {
  local to=$1 p; shift
  for p in $(pid_tree "$@"); do echo "$p" >"$to/cgroup.procs" 2>/dev/null || true; done
}
cap_enter() { cap_move "$CAP_DIR" "$@"; }
cap_leave() { cap_move "$CAP_HOME" "$@"; }

cap_destroy() {
  [ -n "$CAP_DIR" ] || return 0
  local p
  for p in $(cat "$CAP_DIR/cgroup.procs" 2>/dev/null); do echo "$p" >"$CAP_HOME/cgroup.procs" 2>/dev/null || true; done
  rmdir "$CAP_DIR" 2>/dev/null || true
  CAP_DIR=""
}

# ---------------------------------------------------------------- configs

write_www() {
  mkdir -p "$NGX_DIR/www" "$NGX_DIR/tmp"
  printf 'Hello, World!' >"$NGX_DIR/www/small.txt"                               # 13 bytes
  head -c 1024 /dev/zero | tr '\0' 'a' >"$NGX_DIR/www/1k.txt"
  head -c 16384 /dev/zero | tr '\0' 'b' >"$NGX_DIR/www/16k.txt"
  head -c 1048576 /dev/zero | tr '\0' 'c' >"$OUT/post-1m.bin"
}

nginx_common_http() {
  cat <<EOF
  access_log off;
  client_body_temp_path $NGX_DIR/tmp/client;
  proxy_temp_path $NGX_DIR/tmp/proxy;
  fastcgi_temp_path $NGX_DIR/tmp/fastcgi;
  uwsgi_temp_path $NGX_DIR/tmp/uwsgi;
  scgi_temp_path $NGX_DIR/tmp/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  default_type text/plain;
EOF
}

# Upstream: 1 worker, fixed bodies, keep-alive, accepts (and discards) 1 MiB POSTs.
write_origin_conf() {
  cat >"$OUT/origin.conf" <<EOF
# echo module (a dependency of nginx-light): echo_read_request_body
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 1;
pid $OUT/origin.pid;
error_log $OUT/origin.error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
$(nginx_common_http)
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=1h;
  open_file_cache_valid 1h;
  server {
    listen 127.0.0.1:$P_ORIGIN backlog=4096;
    listen 127.0.0.1:$P_ORIGIN_HAPROXY backlog=4096;
    listen 127.0.0.1:$P_ORIGIN_NGINX backlog=4096;
    listen 127.0.0.1:$P_ORIGIN_H2O backlog=4096;
    root $NGX_DIR/www;
    client_max_body_size 2m;
    # The upload handler reads the whole 1 MiB body (in memory) before it answers,
    # like a real application. (A plain \`return 200\` answers first and discards the
    # body afterwards: a different, early-response path that made nginx-as-proxy
    # close client connections mid-body.)
    location = /upload {
      client_body_buffer_size 2m;
      echo_read_request_body;
      echo ok;
    }
    # Answers after a second (bench/connmem.sh: requests held in flight).
    location = /slow { echo_sleep 1; echo ok; }
    # Zipkin sink for the features-on case.
    location = /api/v2/spans { return 202; }
  }
  server {
    listen 127.0.0.1:$P_ORIGIN_STATUS;
    location = /status { stub_status; }
  }
}
EOF
}

write_nginx302_conf() {
  cat >"$OUT/nginx302.conf" <<EOF
worker_processes 1;
pid $OUT/nginx302.pid;
error_log $OUT/nginx302.error.log warn;
events { worker_connections 1800; }
http {
$(nginx_common_http)
  server {
    listen 127.0.0.1:$P_NGINX302 backlog=4096;
    location / { return 302 https://example.com/x; }
  }
}
EOF
}

write_nginxproxy_conf() {
  cat >"$OUT/nginx-proxy.conf" <<EOF
worker_processes 1;
pid $OUT/nginx-proxy.pid;
error_log $OUT/nginx-proxy.error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
$(nginx_common_http)
  upstream origin {
    server 127.0.0.1:$(upstream_port nginx);
    keepalive 9000;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$P_NGINXPROXY backlog=4096;
    client_max_body_size 2m;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Stream request bodies like HAProxy and Outrigger do (no temp file).
      proxy_request_buffering off;
    }
  }
}
EOF
}

write_haproxy_cfg() {
  cat >"$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9900   # client connections; with as many server ones, within a 20,000-fd limit
  # no 'log' line: logging off

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend bench
  bind 127.0.0.1:$P_HAPROXY
  default_backend origin

backend origin
  server o1 127.0.0.1:$(upstream_port haproxy)
EOF
}

# h2o 2.2 as reverse proxy: one thread, keep-alive to the upstream (its default
# proxy.timeout.keepalive is 2 s; raised so that pooled connections live as long
# as the other proxies'), no access log.
write_h2o_conf() {
  # user: started as root, h2o would switch to nobody, who cannot write bench/out.
  cat >"$OUT/h2o.conf" <<EOF
user: $(id -un)
num-threads: 1
max-connections: 19000
error-log: $OUT/h2o.error.log
listen:
  host: 127.0.0.1
  port: $P_H2O
proxy.timeout.keepalive: 60000
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$(upstream_port h2o)/
EOF
}

# write_outrigger_plain FILE PORT ADMIN UPSTREAM_PORT
write_outrigger_plain() {
  cat >"$1" <<EOF
workers: 1
drain_timeout: 2s
admin: { address: 127.0.0.1:$3 }
log: { level: warn, access_log: off }
listeners:
  - name: bench
    address: 127.0.0.1:$2
    routes:
      - { name: all, match: { prefix: / }, cluster: upstream }
clusters:
  - name: upstream
    endpoints: [127.0.0.1:$4]
    # The peers have no per-cluster limits: Outrigger's (1024 by default, as Envoy's)
    # are raised for the connection sweep, and held below the 20,000-descriptor
    # limit so that at 10,000 client connections the rest wait for a connection.
    pool: { max_idle_per_endpoint: 9000, idle_timeout: 60s }
    limits: { max_connections: 9000, max_pending: 20000, max_requests: 20000 }
EOF
}

# The plain configuration with its route a canary split (90/10 over two clusters of the
# same upstream) with sticky assignment by header, as SPEC §7's example: what the split
# costs over a plain `cluster:` route (issue 19).
write_outrigger_sticky() {
  cat >"$1" <<EOF
workers: 1
drain_timeout: 2s
admin: { address: 127.0.0.1:$A_ORSTICKY }
log: { level: warn, access_log: off }
listeners:
  - name: bench
    address: 127.0.0.1:$P_ORSTICKY
    routes:
      - name: all
        match: { prefix: / }
        split:
          - { cluster: stable, weight: 90 }
          - { cluster: canary, weight: 10, canary: true }
        canary: { sticky: { header: x-user-id } }
clusters:
  - name: stable
    endpoints: [127.0.0.1:$P_ORIGIN]
    pool: { max_idle_per_endpoint: 9000, idle_timeout: 60s }
  - name: canary
    endpoints: [127.0.0.1:$P_ORIGIN]
    pool: { max_idle_per_endpoint: 9000, idle_timeout: 60s }
EOF
}

# The plain listener with what an operator turns on to see traffic: tracing of every
# request (sample_rate 1.0, each request's SERVER and CLIENT spans exported to the
# origin nginx, which answers 202) and an access log file. Nothing else differs.
write_outrigger_tracing() {
  cat >"$1" <<EOF
workers: 1
drain_timeout: 2s
admin: { address: 127.0.0.1:$A_ORTRACE }
log: { level: warn, access_log: $OUT/outrigger-tracing.access.log }
tracing:
  service_name: bench
  propagation: [w3c, b3]
  sample_rate: 1.0
  zipkin: http://127.0.0.1:$P_ORIGIN/api/v2/spans
listeners:
  - name: bench
    address: 127.0.0.1:$P_ORTRACE
    routes:
      - { name: all, match: { prefix: / }, cluster: origin }
clusters:
  - name: origin
    endpoints: [127.0.0.1:$P_ORIGIN]
    pool: { max_idle_per_endpoint: 1024, idle_timeout: 60s }
EOF
}

# The plain configuration (write_outrigger_plain) with its cluster discovered in etcd
# (SPEC §12) instead of listed: the same one endpoint, put in the registry by start_etcd.
write_outrigger_discovered() {
  write_outrigger_plain "$1" $P_ORDISC $A_ORDISC $P_ORIGIN
  sed -i -e "s|^listeners:|registry: { etcd: { endpoints: [http://127.0.0.1:$P_ETCD] } }\nlisteners:|" \
    -e "s|^    endpoints: \[127.0.0.1:$P_ORIGIN\]|    discovery: { service: origin }|" "$1"
}

# start_etcd: one etcd member (Debian's etcd-server) in bench/out/etcd, with the origin's
# record written as another tool would (no lease).
start_etcd() {
  command -v etcd >/dev/null || { skip "etcd: not installed (etcd-server)"; return 1; }
  rm -rf "$OUT/etcd"
  start_bg etcd "$OUT/etcd.log" etcd --name bench --data-dir "$OUT/etcd" \
    --listen-client-urls http://127.0.0.1:$P_ETCD --advertise-client-urls http://127.0.0.1:$P_ETCD \
    --listen-peer-urls http://127.0.0.1:$P_ETCD_PEER --initial-advertise-peer-urls http://127.0.0.1:$P_ETCD_PEER \
    --initial-cluster bench=http://127.0.0.1:$P_ETCD_PEER --initial-cluster-state new
  wait_port "$LAST_PID" "$P_ETCD" 10 || { skip "etcd: did not start (see bench/out/etcd.log)"; return 1; }
  local key val i
  key=$(printf '/outrigger/services/origin/bench' | base64 -w0)
  val=$(printf '{"address":"127.0.0.1:%s"}' "$P_ORIGIN" | base64 -w0)
  for i in $(seq 50); do
    curl -fs "http://127.0.0.1:$P_ETCD/v3/kv/put" -d "{\"key\":\"$key\",\"value\":\"$val\"}" >/dev/null && return 0
    sleep 0.1
  done
  skip "etcd: the origin's record could not be written"
}

# "Features on": the policies over a request (SPEC §5-§7): retry policy, circuit breaker,
# split and inbound idempotency. Tracing and the access log are measured on their own
# (write_outrigger_tracing, the 'tracing' case), so each verdict says what its feature costs.
write_outrigger_features() {
  cat >"$1" <<EOF
workers: 1
drain_timeout: 2s
admin: { address: 127.0.0.1:$A_ORFEAT }
log: { level: warn }
listeners:
  - name: bench
    address: 127.0.0.1:$P_ORFEAT
    idempotency: { enabled: true, ttl: 1h }
    routes:
      - name: all
        match: { prefix: / }
        timeout: 5s
        retry:
          attempts: 3
          on: [connect-failure, reset, gateway-error]
          per_try_timeout: 2s
          backoff: { base: 25ms, max: 250ms }
          budget: { ratio: 0.2, min_concurrency: 3 }
          idempotency_key: generate
          buffer_limit: 64KiB
        split:
          - { cluster: stable, weight: 90 }
          - { cluster: canary, weight: 10, canary: true }
clusters:
  - name: stable
    endpoints: [127.0.0.1:$P_ORIGIN]
    pool: { max_idle_per_endpoint: 1024, idle_timeout: 60s }
    circuit_breaker: { consecutive_failures: 5, failure_rate: { threshold: 0.5, window: 10s, min_requests: 20 }, open_duration: 30s }
  - name: canary
    endpoints: [127.0.0.1:$P_ORIGIN]
    pool: { max_idle_per_endpoint: 1024, idle_timeout: 60s }
    circuit_breaker: { consecutive_failures: 5, failure_rate: { threshold: 0.5, window: 10s, min_requests: 20 }, open_duration: 30s }
EOF
}

# The features-on configuration without the two policies issue 17's speed clause is
# about: no route `retry` and no listener `idempotency`, the split and the breakers as
# they are. "A route with a retry policy and a listener with idempotency enabled stay
# within 5% of the same routes without them": these are the same routes.
write_outrigger_routes() {
  P_ORFEAT=$P_ORROUTES A_ORFEAT=$A_ORROUTES write_outrigger_features "$1"
  sed -i -e '/^    idempotency: { enabled/d' -e '/^        retry:$/,/^          buffer_limit:/d' "$1"
  # The edit goes by write_outrigger_features' lines: should they change, say so rather
  # than measure the features against themselves.
  if grep -qE '^ *(retry|idempotency):' "$1"; then die "write_outrigger_routes: $1 still has retry or idempotency"; fi
}

# ---------------------------------------------------------------- starters
# Each sets LAST_PID on success, or prints a SKIP line and returns 1.

start_nginx() {   # NAME CONF PORT
  local name=$1 conf=$2 port=$3
  start_bg "$name" "$OUT/$name.log" nginx -p "$OUT" -c "$conf" -g 'daemon off;'
  if ! wait_port "$LAST_PID" "$port" 5; then
    skip "$name: did not start (see bench/out/$name.log, bench/out/$name.error.log)"
    return 1
  fi
}

start_haproxy() {
  haproxy -c -q -f "$OUT/haproxy.cfg" >"$OUT/haproxy.check.log" 2>&1 || {
    skip "haproxy: config check failed (see bench/out/haproxy.check.log)"; return 1; }
  start_bg haproxy "$OUT/haproxy.log" haproxy -db -f "$OUT/haproxy.cfg"
  wait_port "$LAST_PID" "$P_HAPROXY" 5 || {
    skip "haproxy: did not start (see bench/out/haproxy.log)"; }
}

start_h2o() {
  h2o -t -c "$OUT/h2o.conf" >"$OUT/h2o.check.log" 2>&1 || {
    skip "h2o: config check failed (see bench/out/h2o.check.log)"; return 1; }
  start_bg h2o "$OUT/h2o.log" h2o -c "$OUT/h2o.conf"
  wait_port "$LAST_PID" "$P_H2O" 5 || {
    skip "h2o: did not start (see bench/out/h2o.log, bench/out/h2o.error.log)"; }
}

# start_outrigger NAME CONF PORT
start_outrigger() {
  local name=$1 conf=$2 port=$3
  if [ ! -x "$OUTRIGGER_BIN" ]; then
    skip "$name: ${OUTRIGGER_BIN#$ROOT_DIR/} not built"; return 1
  fi
  if ! "$OUTRIGGER_BIN" --validate -c "$conf" >"$OUT/$name.validate.log" 2>&1; then
    skip "$name: outrigger --validate rejected ${conf#$ROOT_DIR/} (see bench/out/$name.validate.log)"
    sed 's/^/    /' "$OUT/$name.validate.log" | head -5 >&2
    return 1
  fi
  start_bg "$name" "$OUT/$name.log" "$OUTRIGGER_BIN" -c "$conf" --workers 1
  wait_port "$LAST_PID" "$port" 5 || {
    skip "$name: did not start (see bench/out/$name.log)"; }
}

start_shortener() {
  if [ ! -x "$SHORTENER_BIN" ]; then
    skip "shortener: ${SHORTENER_BIN#$ROOT_DIR/} not built"; return 1
  fi
  rm -f "$OUT"/shortener.db "$OUT"/shortener.db-*
  start_bg shortener "$OUT/shortener.log" "$SHORTENER_BIN" \
    --listen 127.0.0.1:$P_SHORTENER --db "$OUT/shortener.db" --base-url http://127.0.0.1:$P_SHORTENER
  wait_port "$LAST_PID" "$P_SHORTENER" 5 || {
    skip "shortener: did not start (see bench/out/shortener.log)"; }
}

# create_link : POST a link to the shortener, print its code.
create_link() {
  local body code
  body=$(curl -s -m 5 -X POST -H 'content-type: application/json' \
    --data '{"url": "https://example.com/bench"}' "http://127.0.0.1:$P_SHORTENER/api/links") || return 1
  code=$(printf '%s' "$body" | sed -n 's/.*"code"[[:space:]]*:[[:space:]]*"\([0-9A-Za-z]*\)".*/\1/p')
  [ -n "$code" ] || { log "shortener POST /api/links answered: $body"; return 1; }
  echo "$code"
}

# setup_and_build : scripts/setup.sh --bench, then the Release build (unless
# SKIP_SETUP=1 / SKIP_BUILD=1). A failed build is reported, not fatal: the
# targets that need the binaries are skipped.
setup_and_build() {
  if [ "${SKIP_SETUP:-0}" != 1 ]; then
    "$ROOT_DIR/scripts/setup.sh" --bench
  fi
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "build: cmake Release -> build-release (log: bench/out/build.log)"
    if (cd "$ROOT_DIR" && cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release &&
        cmake --build build-release -j2) >"$OUT/build.log" 2>&1; then
      log "build: ok"
    else
      log "WARNING: Release build failed (see bench/out/build.log); Outrigger/shortener targets will be skipped"
    fi
  fi
}
