#!/usr/bin/env bash
# Outrigger benchmark matrix. See bench/README.md.
#
#   bench/run.sh                      # full run: DURATION=10s, REPS=3, all cases
#   QUICK=1 bench/run.sh              # smoke: 2 s per run, 1 repetition
#   CASES="small50 features" REPS=5 bench/run.sh
#   LAYOUT=split bench/run.sh         # the proxy alone on its core
#
# Env: DURATION (10s) REPS (3) CASES (all) QUICK (0) WARMUP (1s; 0 with QUICK)
#      WRK_THREADS (1) CONNS (override every case's connection count)
#      LAYOUT (pod: proxy and upstream share CPU 0, wrk on CPU 1; split: the
#      proxy on CPU 0, wrk and the upstream on CPU 1)
#      PERF (0; 1: count system calls per request with perf, which costs a little)
#      PIN (1: pin to cores when nproc >= 2) SKIP_SETUP (0) SKIP_BUILD (0)
# Writes bench/RESULTS.md, bench/plots/*.png, raw data in bench/out/.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

ALL_CASES="small50 capped50 small400 1k 16k post1m small2k small10k demo features postkey sticky tracing discovery redirect"

# Remember the user-set knobs for the "exact command" line before defaulting them.
CMDLINE=""
for v in QUICK DURATION REPS CASES WARMUP WRK_THREADS CONNS LAYOUT PERF PIN SKIP_SETUP SKIP_BUILD; do
  if [ -n "${!v+x}" ]; then CMDLINE+="$v=$(printf '%q' "${!v}") "; fi
done
CMDLINE+="bench/run.sh"

secs() {  # "10s" "10" "2m" -> seconds
  case $1 in
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *)  echo "$1" ;;
  esac
}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  DURATION=${DURATION:-2s}; REPS=${REPS:-1}; WARMUP=${WARMUP:-0}
fi
DUR=$(secs "${DURATION:-10s}")
WARM=$(secs "${WARMUP:-1s}")
REPS=${REPS:-3}
CASES=${CASES:-$ALL_CASES}
WRK_THREADS=${WRK_THREADS:-1}
LAYOUT=${LAYOUT:-pod}
PERF=${PERF:-0}
PERF_SECS=$(( DUR < 3 ? DUR : 3 ))   # the separate pass that counts system calls
case $LAYOUT in pod|split) ;; *) die "LAYOUT must be pod or split, not '$LAYOUT'";; esac
for c in $CASES; do
  case " $ALL_CASES " in *" $c "*) ;; *) die "unknown case '$c' (known: $ALL_CASES)";; esac
done

bench_init
check_ports_free $ALL_PORTS

# ---------------------------------------------------------------- set-up and build
setup_and_build

# ---------------------------------------------------------------- cases and targets
# case_def CASE -> C_PATH C_CONNS C_POST C_EXPECT C_TARGETS C_DESC C_CAP C_UP
# (C_CAP: percent of one core the process(es) under test may use; empty: no cap.
#  C_UP: the upstream service behind the proxies; empty: servers hit directly)
PEERS="haproxy nginx h2o"
case_def() {
  C_POST=0; C_EXPECT=200; C_CAP=""; C_UP=origin; C_KEYS=0; C_STICKY=0
  case $1 in
    small50)  C_PATH=/small.txt; C_CONNS=50;  C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 13-byte body, 50 connections";;
    capped50) C_PATH=/small.txt; C_CONNS=50;  C_CAP=50; C_TARGETS="outrigger $PEERS"; C_DESC="as small50, with each proxy held to half a core (cgroup CPU quota, 5 ms per 10 ms): the throughput one worker carries when the proxy is the bottleneck";;
    small400) C_PATH=/small.txt; C_CONNS=400; C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 13-byte body, 400 connections";;
    1k)       C_PATH=/1k.txt;    C_CONNS=50;  C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 1 KiB body, 50 connections";;
    16k)      C_PATH=/16k.txt;   C_CONNS=50;  C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 16 KiB body, 50 connections";;
    post1m)   C_PATH=/upload;    C_CONNS=50;  C_POST=1048576; C_TARGETS="direct outrigger $PEERS"; C_DESC="POST, 1 MiB request body (read in full by the upstream before it answers), small answer, 50 connections";;
    small2k)  C_PATH=/small.txt; C_CONNS=2000; C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 13-byte body, 2,000 connections (connection sweep)";;
    small10k) C_PATH=/small.txt; C_CONNS=10000; C_TARGETS="direct outrigger $PEERS"; C_DESC="GET, 13-byte body, 10,000 connections (connection sweep)";;
    demo)     C_PATH=/${LINK_CODE:-nocode}; C_CONNS=50; C_EXPECT=302; C_UP=shortener; C_TARGETS="direct sidecar edge+sidecar"; C_DESC="GET /{code} redirect: shortener direct vs through sidecar vs edge -> sidecar -> shortener, 50 connections";;
    features) C_PATH=/small.txt; C_CONNS=50;  C_TARGETS="outrigger outrigger-routes outrigger-features"; C_DESC="GET 13 bytes, 50 connections: Outrigger plain, the features-on routes without retry and idempotency, and features on";;
    postkey)  C_PATH=/upload;    C_CONNS=50;  C_POST=256; C_KEYS=1; C_TARGETS="outrigger outrigger-routes outrigger-features"; C_DESC="POST 256 bytes, each with an Idempotency-Key of its own, 50 connections: plain, the features-on routes without retry and idempotency, and features on (inbound idempotency keeps every answer, the retry policy keeps every body)";;
    tracing)  C_PATH=/small.txt; C_CONNS=50;  C_TARGETS="outrigger outrigger-tracing"; C_DESC="GET 13 bytes, 50 connections: Outrigger plain vs with tracing (sample_rate 1.0, every span exported to Zipkin) and the access log to a file";;
    discovery) C_PATH=/small.txt; C_CONNS=50; C_TARGETS="outrigger outrigger-discovered"; C_DESC="GET 13 bytes, 50 connections: a cluster listed in the file vs the same cluster discovered in etcd (its endpoint set swapped in, never looked up per request)";;
    sticky)   C_PATH=/small.txt; C_CONNS=50;  C_STICKY=1; C_TARGETS="outrigger outrigger-sticky"; C_DESC="GET 13 bytes, 50 connections, an x-user-id of 10,000 users: a plain cluster route vs a 90/10 canary split with sticky assignment by that header";;
    redirect) C_PATH=/${LINK_CODE:-nocode}; C_CONNS=50; C_EXPECT=302; C_UP=""; C_TARGETS="shortener nginx-302"; C_DESC="GET redirect, servers hit directly: shortener vs nginx 'return 302', 50 connections";;
  esac
  if [ -n "${CONNS:-}" ]; then C_CONNS=$CONNS; fi
}

# target_def CASE TARGET -> T_PORT T_SVCS (measured services) T_PIN0 (on CPU 0?)
# T_UP: the upstream behind this target, measured beside it (empty for direct).
target_def() {
  T_PIN0=1; T_UP=$C_UP
  case "$1/$2" in
    demo/direct)          T_PORT=$P_SHORTENER;  T_SVCS=shortener; T_UP="" ;;
    */direct)             T_PORT=$P_ORIGIN;     T_SVCS=origin;    T_UP="" ;;
    */outrigger)          T_PORT=$P_OUTRIGGER;  T_SVCS=outrigger ;;
    */outrigger-features) T_PORT=$P_ORFEAT;     T_SVCS=orfeat ;;
    */outrigger-routes)   T_PORT=$P_ORROUTES;   T_SVCS=orroutes ;;
    */outrigger-sticky)   T_PORT=$P_ORSTICKY;   T_SVCS=orsticky ;;
    */outrigger-tracing)  T_PORT=$P_ORTRACE;    T_SVCS=ortrace ;;
    */outrigger-discovered) T_PORT=$P_ORDISC;   T_SVCS=ordisc ;;
    */haproxy)            T_PORT=$P_HAPROXY;    T_SVCS=haproxy ;;
    */nginx)              T_PORT=$P_NGINXPROXY; T_SVCS=nginxproxy ;;
    */h2o)                T_PORT=$P_H2O;        T_SVCS=h2o ;;
    demo/sidecar)         T_PORT=$P_SIDECAR;    T_SVCS=sidecar ;;
    demo/edge+sidecar)    T_PORT=$P_EDGE;       T_SVCS="edge sidecar" ;;
    redirect/shortener)   T_PORT=$P_SHORTENER;  T_SVCS=shortener ;;
    redirect/nginx-302)   T_PORT=$P_NGINX302;   T_SVCS=nginx302 ;;
    *) die "no target $2 in case $1" ;;
  esac
  # split: for direct, the upstream stays where it is when a proxy is in between
  # (CPU 1), so nothing runs on CPU 0. pod: the upstream is the app of the pod.
  case "$2" in direct) [ "$LAYOUT" = split ] && T_PIN0=0 ;; esac
  case "$1/$2" in redirect/*) T_UP="" ;; esac
  return 0
}

# Which services do the selected cases need?
declare -A NEED=() SVC_PID=() SVC_IDLE=() SVC_HWM=() SVC_SKIP=()
# note_hwm SERVICE : SVC_HWM keeps the service's lifetime peak RSS across the per-run
# resets of VmHWM (hwm_reset).
note_hwm() {
  local v; v=$(status_kb VmHWM "${SVC_PID[$1]}")
  [ "$v" -gt "${SVC_HWM[$1]:-0}" ] && SVC_HWM[$1]=$v
  return 0
}
CAP_SKIP=""
for c in $CASES; do
  case_def "$c"
  for t in $C_TARGETS; do target_def "$c" "$t"; for s in $T_SVCS; do NEED[$s]=1; done; done
  [ -n "$C_UP" ] && NEED[$C_UP]=1
  if [ -n "$C_CAP" ] && ! cap_create "$C_CAP"; then CAP_SKIP=$SKIP_MSG; fi
done

# ---------------------------------------------------------------- start everything
write_www
log "starting services (logs and generated configs in bench/out/)"
if [ -n "${NEED[origin]:-}" ]; then
  write_origin_conf
  start_nginx origin "$OUT/origin.conf" $P_ORIGIN || die "the upstream nginx must start"
  SVC_PID[origin]=$LAST_PID
fi
if [ -n "${NEED[nginx302]:-}" ]; then
  write_nginx302_conf
  if start_nginx nginx302 "$OUT/nginx302.conf" $P_NGINX302; then SVC_PID[nginx302]=$LAST_PID; else SVC_SKIP[nginx302]=$SKIP_MSG; fi
fi
if [ -n "${NEED[shortener]:-}" ]; then
  if start_shortener; then
    SVC_PID[shortener]=$LAST_PID
    if LINK_CODE=$(create_link); then
      log "shortener: created link code $LINK_CODE"
    else
      skip "shortener: POST /api/links failed (see bench/out/shortener.log)" || SVC_SKIP[shortener]=$SKIP_MSG
      unset 'SVC_PID[shortener]'
    fi
  else
    SVC_SKIP[shortener]=$SKIP_MSG
  fi
fi
if [ -n "${NEED[haproxy]:-}" ]; then
  write_haproxy_cfg
  if start_haproxy; then SVC_PID[haproxy]=$LAST_PID; else SVC_SKIP[haproxy]=$SKIP_MSG; fi
fi
if [ -n "${NEED[nginxproxy]:-}" ]; then
  write_nginxproxy_conf
  if start_nginx nginx-proxy "$OUT/nginx-proxy.conf" $P_NGINXPROXY; then SVC_PID[nginxproxy]=$LAST_PID; else SVC_SKIP[nginxproxy]=$SKIP_MSG; fi
fi
if [ -n "${NEED[h2o]:-}" ]; then
  write_h2o_conf
  if start_h2o; then SVC_PID[h2o]=$LAST_PID; else SVC_SKIP[h2o]=$SKIP_MSG; fi
fi
if [ -n "${NEED[outrigger]:-}" ]; then
  write_outrigger_plain "$OUT/outrigger.yaml" $P_OUTRIGGER $A_OUTRIGGER $P_ORIGIN
  if start_outrigger outrigger "$OUT/outrigger.yaml" $P_OUTRIGGER; then SVC_PID[outrigger]=$LAST_PID; else SVC_SKIP[outrigger]=$SKIP_MSG; fi
fi
if [ -n "${NEED[orfeat]:-}" ]; then
  write_outrigger_features "$OUT/outrigger-features.yaml"
  if start_outrigger outrigger-features "$OUT/outrigger-features.yaml" $P_ORFEAT; then
    SVC_PID[orfeat]=$LAST_PID
  else
    SVC_SKIP[orfeat]=$SKIP_MSG
    log "NOTE: features-on case skipped (the loader may not accept every key in bench/out/outrigger-features.yaml yet)"
  fi
fi
if [ -n "${NEED[orroutes]:-}" ]; then
  write_outrigger_routes "$OUT/outrigger-routes.yaml"
  if start_outrigger outrigger-routes "$OUT/outrigger-routes.yaml" $P_ORROUTES; then SVC_PID[orroutes]=$LAST_PID; else SVC_SKIP[orroutes]=$SKIP_MSG; fi
fi
if [ -n "${NEED[ortrace]:-}" ]; then
  write_outrigger_tracing "$OUT/outrigger-tracing.yaml"
  if start_outrigger outrigger-tracing "$OUT/outrigger-tracing.yaml" $P_ORTRACE; then SVC_PID[ortrace]=$LAST_PID; else SVC_SKIP[ortrace]=$SKIP_MSG; fi
fi
if [ -n "${NEED[ordisc]:-}" ]; then
  if start_etcd; then
    write_outrigger_discovered "$OUT/outrigger-discovered.yaml"
    if start_outrigger outrigger-discovered "$OUT/outrigger-discovered.yaml" $P_ORDISC; then
      SVC_PID[ordisc]=$LAST_PID
      # Until its list is in, the discovered cluster has no endpoint (503): wait for it.
      for _ in $(seq 50); do
        curl -fs -o /dev/null "http://127.0.0.1:$P_ORDISC/small.txt" && break
        sleep 0.1
      done
    else
      SVC_SKIP[ordisc]=$SKIP_MSG
    fi
  else
    SVC_SKIP[ordisc]=$SKIP_MSG
  fi
fi
if [ -n "${NEED[orsticky]:-}" ]; then
  write_outrigger_sticky "$OUT/outrigger-sticky.yaml"
  if start_outrigger outrigger-sticky "$OUT/outrigger-sticky.yaml" $P_ORSTICKY; then SVC_PID[orsticky]=$LAST_PID; else SVC_SKIP[orsticky]=$SKIP_MSG; fi
fi
if [ -n "${NEED[sidecar]:-}" ]; then
  write_outrigger_plain "$OUT/sidecar.yaml" $P_SIDECAR $A_SIDECAR $P_SHORTENER
  if start_outrigger sidecar "$OUT/sidecar.yaml" $P_SIDECAR; then SVC_PID[sidecar]=$LAST_PID; else SVC_SKIP[sidecar]=$SKIP_MSG; fi
fi
if [ -n "${NEED[edge]:-}" ]; then
  write_outrigger_plain "$OUT/edge.yaml" $P_EDGE $A_EDGE $P_SIDECAR
  if start_outrigger edge "$OUT/edge.yaml" $P_EDGE; then SVC_PID[edge]=$LAST_PID; else SVC_SKIP[edge]=$SKIP_MSG; fi
fi

sleep 1
for s in "${!SVC_PID[@]}"; do SVC_IDLE[$s]=$(status_kb VmRSS "${SVC_PID[$s]}"); done

if [ "$PINNING" = 1 ] && [ "$LAYOUT" = pod ]; then
  PIN_NOTE="pod layout, pinned with taskset: the proxy under test and its upstream (nginx/shortener) share CPU 0, as a sidecar and its app share a pod's core; wrk and idle services on CPU 1 (for 'direct', the upstream alone on CPU 0)"
elif [ "$PINNING" = 1 ]; then
  PIN_NOTE="split layout, pinned with taskset: process(es) under test on CPU 0; wrk, the upstream (nginx/shortener) and idle services on CPU 1 (for 'direct' nothing runs on CPU 0)"
else
  PIN_NOTE="not pinned (PIN=0 or fewer than 2 CPUs)"
fi
log "cpu: $PIN_NOTE"
log "runs: cases=[$CASES] duration=${DUR}s warmup=${WARM}s reps=$REPS wrk -t$WRK_THREADS, interleaved per repetition (even ones backwards)"

# ---------------------------------------------------------------- the matrix
RES="$OUT/results.tsv"; SKIPS="$OUT/skips.tsv"
mkdir -p "$OUT/wrk"
printf 'rep\tcase\ttarget\trps\tp50_us\tp99_us\tp999_us\trequests\terrors\tcpu_s\trss_load_kb\tup_cpu_s\tup_opened\tup_held\tcs\tup_cs\tsc\tup_sc\tsc_requests\n' >"$RES"
: >"$SKIPS"
declare -A SKIPPED=()

all_pids() { local s; for s in "${!SVC_PID[@]}"; do echo "${SVC_PID[$s]}"; done; }

run_wrk() {  # PORT PATH CONNS POSTBYTES SECONDS OUTFILE ; sets WRK_PID, runs in bg
  local cmd=(wrk -t"$WRK_THREADS" -c"$3" -d"$5"s --timeout 5s --latency -s "$LIB/wrk-report.lua"
             "http://127.0.0.1:$1$2")
  [ "$PINNING" = 1 ] && cmd=(taskset -c 1 "${cmd[@]}")
  WRK_POST_BYTES=$4 WRK_IDEM_KEYS=${C_KEYS:-0} WRK_STICKY=${C_STICKY:-0} "${cmd[@]}" >"$6" 2>&1 &
  WRK_PID=$!
  STARTED_PIDS+=("$WRK_PID")
}

precheck() {  # CASE TARGET -> 0 if the target answers C_EXPECT
  local code args=(-s -o /dev/null -w '%{http_code}' -m 10)
  [ "$C_POST" -gt 0 ] && args+=(--data-binary "@$OUT/post-1m.bin" -H 'content-type: application/octet-stream')
  code=$(curl "${args[@]}" "http://127.0.0.1:$T_PORT$C_PATH" 2>/dev/null || true)
  [ "$code" = "$C_EXPECT" ] && return 0
  SKIPPED["$1/$2"]="answered HTTP ${code:-none} instead of $C_EXPECT on $C_PATH"
  return 1
}

# run_matrix CASES... : every repetition runs every target of every case once.
run_matrix() {
local rep c t
for rep in $(seq "$REPS"); do
  for c in "$@"; do
    case_def "$c"
    # Odd repetitions run a case's targets in order, even ones backwards (A B, B A, ...),
    # so that a host that speeds up or slows down over a repetition favours none.
    order=$C_TARGETS
    [ $((rep % 2)) = 0 ] && order=$(printf '%s\n' $C_TARGETS | tac | tr '\n' ' ')
    for t in $order; do
      target_def "$c" "$t"
      key="$c/$t"
      [ -n "${SKIPPED[$key]:-}" ] && continue
      pids=""; missing=""; uppids=""
      for s in $T_SVCS $T_UP; do [ -n "${SVC_PID[$s]:-}" ] || missing+="$s "; done
      for s in $T_SVCS; do pids+="${SVC_PID[$s]:-} "; done
      [ -n "$T_UP" ] && uppids=${SVC_PID[$T_UP]:-}
      if [ -n "$missing" ]; then
        SKIPPED[$key]=""; for s in $missing; do SKIPPED[$key]+="${SVC_SKIP[$s]:-$s not running}; "; done
        SKIPPED[$key]=${SKIPPED[$key]%; }; continue
      fi
      if [ -n "$C_CAP" ] && [ -z "$CAP_DIR" ]; then
        SKIPPED[$key]=$CAP_SKIP; continue
      fi
      if [ "$rep" = 1 ] && ! precheck "$c" "$t"; then
        log "SKIP $key: ${SKIPPED[$key]}"; continue
      fi
      # Everything on CPU 1, then the process(es) under test on CPU 0, and in the
      # pod layout their upstream beside them.
      pin 1 $(all_pids)
      [ "$T_PIN0" = 1 ] && pin 0 $pids
      [ "$LAYOUT" = pod ] && [ -n "$uppids" ] && pin 0 $uppids
      [ -n "$C_CAP" ] && cap_enter $pids
      if [ "$WARM" -gt 0 ]; then
        run_wrk "$T_PORT" "$C_PATH" "$C_CONNS" "$C_POST" "$WARM" "$OUT/wrk/warmup.txt"
        wait "$WRK_PID" || true
      fi
      for f in "$OUT"/outrigger-features.access.log "$OUT"/outrigger-tracing.access.log; do [ -f "$f" ] && : >"$f"; done
      # Nothing samples during the measured run (a sampler's forks show in wrk's
      # latencies): the kernel keeps the peak RSS (VmHWM, reset here) and the
      # counters are read before and after.
      for s in $T_SVCS; do note_hwm "$s"; done
      hwm_ok=$(hwm_reset $pids)
      t0=$(cpu_ticks $pids); u0=0; a0=""; cs0=$(ctx_switches $pids); ucs0=0
      if [ -n "$uppids" ]; then u0=$(cpu_ticks $uppids); ucs0=$(ctx_switches $uppids); fi
      if [ "$T_UP" = origin ]; then a0=$(origin_accepts); fi
      wout="$OUT/wrk/$c.$t.rep$rep.txt"
      run_wrk "$T_PORT" "$C_PATH" "$C_CONNS" "$C_POST" "$DUR" "$wout"
      wait "$WRK_PID" || true
      t1=$(cpu_ticks $pids); u1=0; opened=-1; held=-1; cs1=$(ctx_switches $pids); ucs=-1; sc=-1; usc=-1; preq=0
      if [ "$hwm_ok" = 1 ]; then rss=$(status_kb VmHWM $pids); else rss=$(status_kb VmRSS $pids); fi
      if [ -n "$a0" ]; then a1=$(origin_accepts); [ -n "$a1" ] && opened=$((a1 - a0 - 1)); fi
      if [ -n "$uppids" ]; then
        u1=$(cpu_ticks $uppids); ucs=$(( $(ctx_switches $uppids) - ucs0 ))
        upport=$(upstream_port "$t"); [ "$T_UP" = shortener ] && upport=$P_SHORTENER
        held=$(own_conns "$upport" $pids)
      fi
      # System calls are counted in a pass of their own after the measured one:
      # a syscall tracepoint costs every call, which the CPU figures should not carry.
      if [ "$PERF" = 1 ]; then
        start_perf "$OUT/perf.proxy" $pids; perf_proxy=$PERF_PID; perf_up=""
        if [ -n "$uppids" ]; then start_perf "$OUT/perf.up" $uppids; perf_up=$PERF_PID; fi
        run_wrk "$T_PORT" "$C_PATH" "$C_CONNS" "$C_POST" "$PERF_SECS" "$OUT/wrk/perf.txt"
        wait "$WRK_PID" || true
        PERF_PID=$perf_proxy; stop_perf "$OUT/perf.proxy"; sc=$PERF_COUNT
        if [ -n "$perf_up" ]; then PERF_PID=$perf_up; stop_perf "$OUT/perf.up"; usc=$PERF_COUNT; fi
        preq=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$OUT/wrk/perf.txt"); preq=${preq:-0}
      fi
      [ -n "$C_CAP" ] && cap_leave $pids
      line=$(grep '^BENCH ' "$wout" || true)
      if [ -z "$line" ]; then
        log "WARNING $key rep $rep: wrk produced no result (see $wout)"; continue
      fi
      awk -v rep="$rep" -v c="$c" -v t="$t" -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v rss="$rss" \
          -v uticks=$((u1 - u0)) -v opened="$opened" -v held="$held" -v cs=$((cs1 - cs0)) -v ucs="$ucs" \
          -v sc="$sc" -v usc="$usc" -v preq="$preq" '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
          err = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
          rps = v["duration_us"] > 0 ? v["requests"] / (v["duration_us"] / 1e6) : 0
          printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d\t%.2f\t%d\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", rep, c, t, rps,
            v["p50"], v["p99"], v["p999"], v["requests"], err, ticks / hz, rss, uticks / hz, opened, held,
            cs, ucs, sc, usc, preq
        }' <<<"$line" >>"$RES"
      tail -n1 "$RES" | awk -F'\t' '{ printf "  rep %s %-9s %-19s %9s req/s  p99 %7.2f ms  errors %s\n", $1, $2, $3, $4, $6/1000, $9 }' >&2
    done
  done
done
}

# The sweep's 10,000 connections leave every proxy larger: the other cases run first,
# all their repetitions, so that their RSS under load is their own.
MAIN_CASES=""; SWEEP_CASES=""
for c in $CASES; do case $c in small2k|small10k) SWEEP_CASES+="$c ";; *) MAIN_CASES+="$c ";; esac; done
[ -n "$MAIN_CASES" ] && run_matrix $MAIN_CASES
[ -n "$SWEEP_CASES" ] && run_matrix $SWEEP_CASES

for s in "${!SVC_PID[@]}"; do note_hwm "$s"; done
for k in "${!SKIPPED[@]}"; do printf '%s\t%s\n' "$k" "${SKIPPED[$k]}" >>"$SKIPS"; done

# ---------------------------------------------------------------- report
. "$LIB/report.sh"
write_report
