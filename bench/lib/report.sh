# Report generation for bench/run.sh (sourced). Reads $OUT/results.tsv and
# $OUT/skips.tsv plus the SVC_* arrays; writes $OUT/summary.tsv,
# bench/RESULTS.md and bench/plots/*.png; prints the table to stdout.

svc_label() {
  case $1 in
    origin) echo "nginx upstream (origin)";; nginx302) echo "nginx return 302";;
    shortener) echo "shortener";; outrigger) echo "outrigger";;
    orfeat) echo "outrigger, features on";; orroutes) echo "outrigger, features-on routes without retry and idempotency";; orsticky) echo "outrigger, sticky canary split";; ortrace) echo "outrigger, tracing and access log";; ordisc) echo "outrigger, cluster discovered in etcd";; haproxy) echo "haproxy";;
    nginxproxy) echo "nginx reverse proxy";; h2o) echo "h2o reverse proxy";; sidecar) echo "outrigger sidecar (demo)";;
    edge) echo "outrigger edge (demo)";; *) echo "$1";;
  esac
}

mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == 0) print "–"; else printf "%.1f", k / 1024 }'; }

# summarize: one row per case/target: medians over repetitions, min-max of req/s,
# CPU microseconds per request (the proxy's, its upstream's, their sum: the pod's),
# peak RSS (VmHWM of the measured runs), upstream connections held after them, ratios against haproxy, the best peer
# (the fastest of $PEERS in that case) and direct.
# Columns: 1 case 2 target 3 reps 4 rps 5 rps_min 6 rps_max 7 p50 8 p99 9 p999
# 10 err_pct 11 cpu_us 12 up_us 13 pod_us 14 rss_kb 15 x_haproxy 16 x_direct
# 17 best_peer 18 x_best 19 p99_x_best 20 pod_x_best 21 up_opened 22 up_held
# 23-26 context switches and system calls per request: proxy, upstream, proxy, upstream
summarize() {
  awk -F'\t' -v OFS='\t' -v peers="$PEERS" '
    function median(s,   a, n, i, j, x) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    {
      k = $2 "/" $3
      if (!(k in n)) { order[++nk] = k; cs[k] = $2; tg[k] = $3; mn[k] = $4; mx[k] = $4; pk[k] = -1 }
      n[k]++
      rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; p999[k] = p999[k] " " $7
      if ($4 + 0 < mn[k]) mn[k] = $4; if ($4 + 0 > mx[k]) mx[k] = $4
      req[k] += $8; err[k] += $9; cpu[k] += $10; if ($11 + 0 > rss[k]) rss[k] = $11
      ucpu[k] += $12; op[k] = op[k] " " $13; if ($14 + 0 > pk[k]) pk[k] = $14
      # context switches count over the measured run, system calls over their own pass
      for (f = 15; f <= 18; f++) if ($f != "" && $f + 0 >= 0) { ev[k, f] += $f; evreq[k, f] += (f <= 16 ? $8 : $19) }
    }
    function per(k, f) { return evreq[k, f] > 0 ? sprintf("%.2f", ev[k, f] / evreq[k, f]) : "-" }
    END {
      print "case", "target", "reps", "rps", "rps_min", "rps_max", "p50_us", "p99_us", "p999_us", "err_pct",
            "cpu_us", "up_us", "pod_us", "rss_load_kb", "x_haproxy", "x_direct", "best_peer", "x_best",
            "p99_x_best", "pod_x_best", "up_opened", "up_held", "cs_req", "up_cs_req", "sc_req", "up_sc_req"
      np = split(peers, P, " ")
      for (i = 1; i <= nk; i++) {
        k = order[i]; R[k] = median(rps[k]); P99[k] = median(p99[k])
        C[k] = req[k] ? cpu[k] / req[k] * 1e6 : 0; U[k] = req[k] ? ucpu[k] / req[k] * 1e6 : 0
        if (tg[k] == "direct") { U[k] = C[k]; C[k] = 0 }
        POD[k] = C[k] + U[k]
      }
      for (i = 1; i <= nk; i++) {
        k = order[i]; h = cs[k] "/haproxy"; d = cs[k] "/direct"
        best = ""
        for (j = 1; j <= np; j++) { b = cs[k] "/" P[j]; if ((b in R) && R[b] > 0 && (best == "" || R[b] > R[cs[k] "/" best])) best = P[j] }
        xh = (h in R && R[h] > 0) ? sprintf("%.2f", R[k] / R[h]) : "-"
        xd = (d in R && R[d] > 0) ? sprintf("%.2f", R[k] / R[d]) : "-"
        bk = cs[k] "/" best
        xb = best != "" ? sprintf("%.2f", R[k] / R[bk]) : "-"
        pb = (best != "" && P99[bk] > 0) ? sprintf("%.2f", P99[k] / P99[bk]) : "-"
        cb = (best != "" && POD[bk] > 0) ? sprintf("%.2f", POD[k] / POD[bk]) : "-"
        o = median(op[k])
        print cs[k], tg[k], n[k], sprintf("%.0f", R[k]), mn[k], mx[k], median(p50[k]), P99[k], median(p999[k]),
              sprintf("%.3f", req[k] ? 100 * err[k] / req[k] : 0),
              sprintf("%.2f", C[k]), sprintf("%.2f", U[k]), sprintf("%.2f", POD[k]), rss[k], xh, xd,
              (best != "" ? best : "-"), xb, pb, cb, (o < 0 ? "-" : o), (pk[k] < 0 ? "-" : pk[k]),
              per(k, 15), per(k, 16), per(k, 17), per(k, 18)
      }
    }' "$RES" >"$OUT/summary.tsv"
}

# row CASE TARGET -> prints the summary.tsv row (tab-separated) or nothing
row() { awk -F'\t' -v c="$1" -v t="$2" '$1 == c && $2 == t' "$OUT/summary.tsv"; }
skip_reason() { awk -F'\t' -v k="$1/$2" '$1 == k { print $2 }' "$SKIPS"; }

results_table() {
  echo "| case | target | req/s (median) | min–max | p50 ms | p99 ms | p99.9 ms | ×HAProxy | ×best peer | ×direct | proxy CPU µs/req | upstream CPU µs/req | pod µs/req | upstream conns opened / held | RSS under load MiB | errors % |"
  echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local c t r
  for c in $CASES; do
    case_def "$c"
    for t in $C_TARGETS; do
      r=$(row "$c" "$t")
      if [ -n "$r" ]; then
        awk -F'\t' '{ xb = ($2 == $17) ? "best" : ($17 == "-" ? "-" : $18 " (" $17 ")")
          printf "| %s | %s | %s | %s–%s | %.3f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s / %s | %.1f | %s |\n",
          $1, $2, $4, $5, $6, $7 / 1000, $8 / 1000, $9 / 1000, $15, xb, $16, ($2 == "direct" ? "–" : $11), $12, $13,
          $21, $22, $14 / 1024, $10 }' <<<"$r"
      else
        echo "| $c | $t | skipped: $(skip_reason "$c" "$t" | sed 's/|/\\|/g') |  |  |  |  |  |  |  |  |  |  |  |  |  |"
      fi
    done
  done
}

# detail_table: how each proxy and its upstream use the pod's core, per request.
detail_table() {
  local c t r
  echo "| case | target | proxy context switches / req | upstream context switches / req | proxy syscalls / req | upstream syscalls / req | upstream conns opened / held |"
  echo "|---|---|--:|--:|--:|--:|--:|"
  for c in $CASES; do
    case_def "$c"
    for t in $C_TARGETS; do
      r=$(row "$c" "$t")
      [ -n "$r" ] || continue
      awk -F'\t' '{ d = ($2 == "direct"); printf "| %s | %s | %s | %s | %s | %s | %s / %s |\n", $1, $2,
        d ? "–" : $23, d ? $23 : $24, d ? "–" : $25, d ? $25 : $26, $21, $22 }' <<<"$r"
    done
  done
}

resources_table() {
  echo "| process | idle RSS MiB | peak RSS (VmHWM) MiB |"
  echo "|---|--:|--:|"
  local s
  for s in origin nginx302 shortener outrigger orfeat orroutes haproxy nginxproxy h2o sidecar edge; do
    [ -n "${SVC_PID[$s]:-}" ] || continue
    echo "| $(svc_label "$s") | $(mib "${SVC_IDLE[$s]}") | $(mib "${SVC_HWM[$s]}") |"
  done
}

# verdict VALUE OP LIMIT -> PASS/FAIL (awk comparison), or n/a when VALUE empty
verdict() {
  [ -n "$1" ] && [ "$1" != "-" ] || { echo "n/a (not measured)"; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print (ok ? "PASS" : "FAIL") }'
}
field() { row "$1" "$2" | cut -f"$3"; }
ratio_of() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; return 0; }
# paired CASE A B -> the median over repetitions of A's req/s over B's in the same
# repetition (runs next to each other), or nothing when no repetition has both. On a
# host whose speed drifts over minutes this reads a ratio better than the medians' ratio.
paired() {
  awk -F'\t' -v c="$1" -v a="$2" -v b="$3" '
    NR > 1 && $2 == c && $4 > 0 { if ($3 == a) ra[$1] = $4; if ($3 == b) rb[$1] = $4 }
    END {
      n = 0
      for (k in ra) if (k in rb) x[++n] = ra[k] / rb[k]
      if (n == 0) exit
      for (i = 2; i <= n; i++) { v = x[i]; for (j = i - 1; j >= 1 && x[j] > v; j--) x[j + 1] = x[j]; x[j + 1] = v }
      printf "%.3f", n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }' "$RES"
}

targets_table() {
  local x c r p99o p99b podo podb feat off ratio sh ng idle best
  echo "| target | measured | verdict |"
  echo "|---|--:|---|"
  for c in small50 1k 16k small400 post1m; do
    r=$(row "$c" outrigger)
    if [ -z "$r" ]; then echo "| $c: Outrigger ≥ 1.1× the best peer's req/s, pod cost and p99 ≤ the best peer's | – | n/a (not measured) |"; continue; fi
    best=$(cut -f17 <<<"$r"); x=$(cut -f18 <<<"$r")
    echo "| $c: Outrigger ≥ 1.1× the best peer's req/s ($best) | $x | $(verdict "$x" '>=' 1.1) |"
    podo=$(cut -f13 <<<"$r"); podb=$(field "$c" "$best" 13)
    echo "| $c: Outrigger's pod CPU per request (proxy + upstream) ≤ $best's | $podo vs ${podb:-–} µs | $(verdict "$podo" '<=' "$podb") |"
    p99o=$(cut -f8 <<<"$r"); p99b=$(field "$c" "$best" 8)
    echo "| $c: Outrigger p99 ≤ $best's | $(awk -v a="$p99o" -v b="${p99b:-0}" 'BEGIN{printf "%.3f vs %.3f ms", a/1000, b/1000}') | $(verdict "$p99o" '<=' "$p99b") |"
  done
  x=$(field capped50 outrigger 18); best=$(field capped50 outrigger 17)
  echo "| capped50: Outrigger ≥ 1.0× the best peer's req/s (${best:-–}; the proxy, held to half a core, is the bottleneck) | ${x:-–} | $(verdict "$x" '>=' 1.0) |"
  idle=${SVC_IDLE[outrigger]:-}
  echo "| Outrigger idle RSS ≤ 10 MiB | $( [ -n "$idle" ] && mib "$idle" || echo –) MiB | $(verdict "$idle" '<=' 10240) |"
  ratio=$(paired features outrigger-features outrigger)
  echo "| Features on ≥ 0.95× plain req/s (GET: the retry policy, inbound idempotency, the split, the breakers) | ${ratio:-–} | $(verdict "$ratio" '>=' 0.95) |"
  ratio=$(paired features outrigger-features outrigger-routes)
  echo "| A retry policy and inbound idempotency ≥ 0.95× the same routes without them, GETs | ${ratio:-–} | $(verdict "$ratio" '>=' 0.95) |"
  ratio=$(paired postkey outrigger-features outrigger)
  echo "| Keyed POSTs: features on ≥ 0.95× plain req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.95) |"
  ratio=$(paired postkey outrigger-features outrigger-routes)
  echo "| Keyed POSTs: a retry policy and inbound idempotency ≥ 0.95× the same routes without them | ${ratio:-–} | $(verdict "$ratio" '>=' 0.95) |"
  ratio=$(paired sticky outrigger-sticky outrigger)
  echo "| A sticky canary split ≥ 0.97× a plain \`cluster:\` route's req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.97) |"
  ratio=$(paired tracing outrigger-tracing outrigger)
  echo "| Tracing (sample_rate 1.0, spans exported) and the access log on ≥ 0.90× both off req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.90) |"
  ratio=$(paired discovery outrigger-discovered outrigger)
  echo "| A cluster discovered in etcd ≥ 0.97× the same cluster listed in the file, req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.97) |"
  sh=$(field redirect shortener 4); ng=$(field redirect nginx-302 4)
  ratio=$(ratio_of "$sh" "$ng")
  echo "| Shortener redirect ≥ 0.7× nginx \`return 302\` req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.7) |"
}

# sweep_table: req/s, p99 and RSS under load per target over the connection counts.
SWEEP="small50:50 small400:400 small2k:2000 small10k:10000"
sweep_table() {
  local t e c n r line
  echo "| target | $(for e in $SWEEP; do printf '%s conns: req/s · p99 ms · RSS MiB | ' "${e#*:}"; done | sed 's/ | $//') |"
  echo "|---$(for e in $SWEEP; do printf '|--:'; done)|"
  for t in direct outrigger $PEERS; do
    line="| $t"
    for e in $SWEEP; do
      c=${e%%:*}; r=$(row "$c" "$t")
      if [ -n "$r" ]; then line+=" | $(awk -F'\t' '{ printf "%s · %.2f · %.1f", $4, $8 / 1000, $14 / 1024 }' <<<"$r")"
      else line+=" | –"; fi
    done
    echo "$line |"
  done
}
have_sweep() { local e; for e in $SWEEP; do [ -n "$(row "${e%%:*}" outrigger)" ] && return 0; done; return 1; }

make_plots() {
  rm -f "$PLOTS"/rps-vs-direct.png "$PLOTS"/p99.png "$PLOTS"/other.png
  local mcases="" c
  for c in $CASES; do case $c in small50|small400|1k|16k|post1m|small2k|small10k) mcases+="$c ";; esac; done
  PLOT_LINKS=""
  if [ -n "$mcases" ]; then
    # Matrix: one row per case, one column per proxy ("?" = not measured).
    awk -F'\t' -v cases="$mcases" '
      NR > 1 { r[$1 "/" $2] = $4; p[$1 "/" $2] = $8 }
      END {
        n = split(cases, cs, " "); split("direct outrigger haproxy nginx h2o", ts, " ")
        print "case direct outrigger haproxy nginx h2o" > "'"$OUT/plot-ratio.dat"'"
        print "case direct outrigger haproxy nginx h2o" > "'"$OUT/plot-p99.dat"'"
        for (i = 1; i <= n; i++) {
          d = r[cs[i] "/direct"]; a = cs[i]; b = cs[i]
          for (j = 1; j <= 5; j++) {
            k = cs[i] "/" ts[j]
            a = a " " ((k in r && d > 0) ? sprintf("%.3f", r[k] / d) : "?")
            b = b " " ((k in p) ? sprintf("%.3f", p[k] / 1000) : "?")
          }
          print a > "'"$OUT/plot-ratio.dat"'"; print b > "'"$OUT/plot-p99.dat"'"
        }
      }' "$OUT/summary.tsv"
    gnuplot <<EOF
set terminal pngcairo size 900,500 noenhanced
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
set output "$PLOTS/rps-vs-direct.png"
set title "Requests/s relative to direct (no proxy); higher is better"
set yrange [0:*]
plot "$OUT/plot-ratio.dat" using 2:xtic(1) title columnheader, '' using 3 title columnheader, '' using 4 title columnheader, '' using 5 title columnheader, '' using 6 title columnheader
set output "$PLOTS/p99.png"
set title "p99 latency (ms, log scale); lower is better"
set logscale y
set yrange [*:*]
plot "$OUT/plot-p99.dat" using 2:xtic(1) title columnheader, '' using 3 title columnheader, '' using 4 title columnheader, '' using 5 title columnheader, '' using 6 title columnheader
EOF
    PLOT_LINKS+="![req/s relative to direct](plots/rps-vs-direct.png)"$'\n\n'"![p99 latency](plots/p99.png)"$'\n\n'
  fi
  rm -f "$PLOTS"/sweep.png
  if have_sweep; then
    # One line per target: req/s and RSS over the connection count.
    awk -F'\t' -v sweep="$SWEEP" -v targets="direct outrigger $PEERS" '
      NR > 1 { r[$1 "/" $2] = $4; m[$1 "/" $2] = $14 / 1024 }
      END {
        ne = split(sweep, e, " "); nt = split(targets, t, " ")
        for (j = 1; j <= nt; j++) {
          print "conns", t[j], t[j]
          for (i = 1; i <= ne; i++) { split(e[i], kv, ":"); k = kv[1] "/" t[j]; if (k in r) print kv[2], r[k], m[k] }
          print ""; print ""
        }
      }' "$OUT/summary.tsv" >"$OUT/plot-sweep.dat"
    gnuplot <<EOF
set terminal pngcairo size 1000,450 noenhanced
set output "$PLOTS/sweep.png"
set multiplot layout 1,2
set logscale x
set xrange [30:15000]
set grid
set xlabel "client connections"
set key top right
set title "req/s over client connections"
set yrange [0:*]
plot for [i=0:4] "$OUT/plot-sweep.dat" index i using 1:2 with linespoints title columnheader(2)
set key top left
set title "RSS under load (MiB)"
plot for [i=0:4] "$OUT/plot-sweep.dat" index i using 1:3 with linespoints title columnheader(2)
unset multiplot
EOF
    PLOT_LINKS+="![connection sweep](plots/sweep.png)"$'\n\n'
  fi
  awk -F'\t' 'NR > 1 && ($1 == "demo" || $1 == "features" || $1 == "sticky" || $1 == "tracing" || $1 == "discovery" || $1 == "redirect") { print $1 ":" $2, $4 }' \
    "$OUT/summary.tsv" >"$OUT/plot-other.dat"
  if [ -s "$OUT/plot-other.dat" ]; then
    gnuplot <<EOF
set terminal pngcairo size 900,500 noenhanced
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set key off
set yrange [0:*]
set xtics rotate by -30
set output "$PLOTS/other.png"
set title "Requests/s: demo topology, features off/on, redirect servers"
plot "$OUT/plot-other.dat" using 2:xtic(1)
EOF
    PLOT_LINKS+="![demo, features, redirect](plots/other.png)"$'\n\n'
  fi
}

write_report() {
  summarize
  make_plots 2>"$OUT/gnuplot.log" || log "WARNING: gnuplot failed (see bench/out/gnuplot.log)"
  local cpu kernel md="${RESULTS_MD:-$BENCH_DIR/RESULTS.md}" c
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  kernel=$(uname -srm)
  {
    echo "# Outrigger benchmark results"
    echo
    echo "Generated by \`bench/run.sh\`; do not edit by hand. How to read it: [README.md](README.md)."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- command: \`$CMDLINE\`"
    echo "- machine: $NPROC CPUs (\`nproc\`), ${cpu:-unknown CPU}; kernel $kernel"
    echo "- commit: $(git -C "$ROOT_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT_DIR" diff --quiet HEAD 2>/dev/null || echo ' (working tree has uncommitted changes)')"
    echo "- tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | sed 's/.*: //'); $(h2o --version 2>/dev/null | head -1)"
    echo "- runs: ${DUR} s each (after a ${WARM} s warm-up), $REPS repetition(s), interleaved (every target of every case once per repetition, backwards in even ones), \`wrk -t$WRK_THREADS --timeout 5s\`; medians over repetitions, req/s spread as min–max"
    echo "- cores: $PIN_NOTE"
    [ "$QUICK" = 1 ] && echo "- **QUICK=1 smoke run: numbers are not meaningful as a benchmark**"
    echo
    echo "## Requests/s and latency"
    echo
    for c in $CASES; do case_def "$c"; echo "- \`$c\`: $C_DESC"; done
    echo
    results_table
    echo
    echo "proxy CPU and RSS are for the process(es) under test (the demo's edge+sidecar row sums both sidecars); upstream CPU is the upstream's behind it in the same run (for \`direct\` rows, the upstream alone), and the pod's cost is their sum. Upstream connections: accepted by the upstream nginx during the measured run (after the warm-up), and those this proxy holds established to it right after the run (idle pooled ones left from earlier cases count). ×best peer: req/s ÷ that of the fastest of HAProxy, nginx and h2o in the case. RSS sums a process tree (nginx: master + worker)."
    echo
    echo "## Where the pod's core goes"
    echo
    echo "Context switches (voluntary and involuntary, every thread, from \`/proc/PID/task/*/status\`) and, with \`PERF=1\`, system calls (\`perf stat -e raw_syscalls:sys_enter\`, in a pass of its own after each measured run, so that the tracepoint's cost stays out of the measured figures), per request, for the proxy and for the upstream behind it (for \`direct\`, the upstream alone). A proxy that wakes its upstream once per request where another wakes it once per batch shows here first."
    echo
    detail_table
    echo
    if have_sweep; then
      echo "## Connection sweep"
      echo
      sweep_table
      echo
    fi
    echo "## Memory"
    echo
    resources_table
    echo
    echo "## Targets"
    echo
    targets_table
    echo
    echo "The ratios of one configuration to another (features, keyed POSTs, sticky, tracing, discovery) are the median over repetitions of each repetition's ratio: the two runs of a pair are next to each other, in alternating order, so a host whose speed drifts over minutes moves both. The req/s columns above are each target's own median."
    echo
    if [ -n "${PLOT_LINKS:-}" ]; then echo "## Plots"; echo; printf '%s' "$PLOT_LINKS"; fi
    if [ -s "$SKIPS" ]; then
      echo "## Skipped"
      echo
      sed 's/\t/: /; s/^/- /' "$SKIPS"
      echo
    fi
    echo "Raw data: \`bench/out/results.tsv\` (one line per run), \`bench/out/summary.tsv\`, wrk output in \`bench/out/wrk/\`."
    # The hand-written profile notes (what the profile showed, what each
    # optimisation gained) travel with every generated report.
    for notes in CONNMEM.md PROFILE.md SOAK.md; do
      if [ -f "$BENCH_DIR/$notes" ]; then
        echo
        cat "$BENCH_DIR/$notes"
      fi
    done
  } >"$md"
  echo
  results_table
  echo
  detail_table
  echo
  if have_sweep; then sweep_table; echo; fi
  resources_table
  echo
  targets_table
  echo
  log "wrote bench/RESULTS.md and bench/plots/ (raw: bench/out/results.tsv)"
}
