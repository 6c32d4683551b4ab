# Report generation for bench/run.sh (sourced). Reads $OUT/results.tsv and
# $OUT/skips.tsv plus the SVC_* arrays; writes $OUT/summary.tsv,
# bench/RESULTS.md and bench/plots/*.png; prints the table to stdout.

svc_label() {
  case $1 in
    origin) echo "nginx upstream (origin)";; nginx302) echo "nginx return 302";;
    shortener) echo "shortener";; outrigger) echo "outrigger";;
    orfeat) echo "outrigger, features on";; haproxy) echo "haproxy";;
    nginxproxy) echo "nginx reverse proxy";; sidecar) echo "outrigger sidecar (demo)";;
    edge) echo "outrigger edge (demo)";; *) echo "$1";;
  esac
}

mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == 0) print "–"; else printf "%.1f", k / 1024 }'; }

# summarize: one row per case/target: medians over repetitions, min-max of req/s,
# CPU s per 100k requests, max sampled RSS, ratios against haproxy and direct.
summarize() {
  awk -F'\t' -v OFS='\t' '
    function median(s,   a, n, i, j, x) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    {
      k = $2 "/" $3
      if (!(k in n)) { order[++nk] = k; cs[k] = $2; tg[k] = $3; mn[k] = $4; mx[k] = $4 }
      n[k]++
      rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6; p999[k] = p999[k] " " $7
      if ($4 + 0 < mn[k]) mn[k] = $4; if ($4 + 0 > mx[k]) mx[k] = $4
      req[k] += $8; err[k] += $9; cpu[k] += $10; if ($11 + 0 > rss[k]) rss[k] = $11
    }
    END {
      print "case", "target", "reps", "rps", "rps_min", "rps_max", "p50_us", "p99_us", "p999_us",
            "err_pct", "cpu_s_per_100k", "rss_load_kb", "x_haproxy", "x_direct", "p99_x_haproxy"
      for (i = 1; i <= nk; i++) { k = order[i]; R[k] = median(rps[k]); P99[k] = median(p99[k]) }
      for (i = 1; i <= nk; i++) {
        k = order[i]; h = cs[k] "/haproxy"; d = cs[k] "/direct"
        xh = (h in R && R[h] > 0) ? sprintf("%.2f", R[k] / R[h]) : "-"
        xd = (d in R && R[d] > 0) ? sprintf("%.2f", R[k] / R[d]) : "-"
        ph = (h in P99 && P99[h] > 0) ? sprintf("%.2f", P99[k] / P99[h]) : "-"
        print cs[k], tg[k], n[k], sprintf("%.0f", R[k]), mn[k], mx[k], median(p50[k]), P99[k], median(p999[k]),
              sprintf("%.3f", req[k] ? 100 * err[k] / req[k] : 0),
              sprintf("%.3f", req[k] ? cpu[k] / req[k] * 100000 : 0), rss[k], xh, xd, ph
      }
    }' "$RES" >"$OUT/summary.tsv"
}

# row CASE TARGET -> prints the summary.tsv row (tab-separated) or nothing
row() { awk -F'\t' -v c="$1" -v t="$2" '$1 == c && $2 == t' "$OUT/summary.tsv"; }
skip_reason() { awk -F'\t' -v k="$1/$2" '$1 == k { print $2 }' "$SKIPS"; }

results_table() {
  echo "| case | target | req/s (median) | min–max | p50 ms | p99 ms | p99.9 ms | ×HAProxy | ×direct | p99 ×HAProxy | CPU s / 100k req | RSS under load MiB | errors % |"
  echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local c t r
  for c in $CASES; do
    case_def "$c"
    for t in $C_TARGETS; do
      r=$(row "$c" "$t")
      if [ -n "$r" ]; then
        awk -F'\t' '{ printf "| %s | %s | %s | %s–%s | %.3f | %.3f | %.3f | %s | %s | %s | %s | %.1f | %s |\n",
          $1, $2, $4, $5, $6, $7 / 1000, $8 / 1000, $9 / 1000, $13, $14, $15, $11, $12 / 1024, $10 }' <<<"$r"
      else
        echo "| $c | $t | skipped: $(skip_reason "$c" "$t" | sed 's/|/\\|/g') |  |  |  |  |  |  |  |  |  |  |"
      fi
    done
  done
}

resources_table() {
  echo "| process | idle RSS MiB | peak RSS (VmHWM) MiB |"
  echo "|---|--:|--:|"
  local s
  for s in origin nginx302 shortener outrigger orfeat haproxy nginxproxy sidecar edge; do
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

targets_table() {
  local x p99o p99h feat off ratio sh ng idle
  echo "| target | measured | verdict |"
  echo "|---|--:|---|"
  x=$(field small50 outrigger 13)
  echo "| Outrigger ≥ 1.0× HAProxy req/s (small50: wrk and the upstream's core is the bottleneck) | ${x:-–} | $(verdict "$x" '>=' 1.0) |"
  x=$(field capped50 outrigger 13)
  echo "| Outrigger ≥ 1.0× HAProxy req/s (capped50: the proxy, held to half a core, is the bottleneck) | ${x:-–} | $(verdict "$x" '>=' 1.0) |"
  p99o=$(field small50 outrigger 8); p99h=$(field small50 haproxy 8)
  if [ -n "$p99o" ] && [ -n "$p99h" ]; then
    echo "| Outrigger p99 ≤ HAProxy p99 (small50) | $(awk -v a="$p99o" -v b="$p99h" 'BEGIN{printf "%.3f vs %.3f ms", a/1000, b/1000}') | $(verdict "$p99o" '<=' "$p99h") |"
  else
    echo "| Outrigger p99 ≤ HAProxy p99 (small50) | – | n/a (not measured) |"
  fi
  idle=${SVC_IDLE[outrigger]:-}
  echo "| Outrigger idle RSS ≤ 10 MiB | $( [ -n "$idle" ] && mib "$idle" || echo –) MiB | $(verdict "$idle" '<=' 10240) |"
  feat=$(field features outrigger-features 4); off=$(field features outrigger 4)
  ratio=$(ratio_of "$feat" "$off")
  echo "| Features on ≥ 0.9× features off req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.9) |"
  sh=$(field redirect shortener 4); ng=$(field redirect nginx-302 4)
  ratio=$(ratio_of "$sh" "$ng")
  echo "| Shortener redirect ≥ 0.7× nginx \`return 302\` req/s | ${ratio:-–} | $(verdict "$ratio" '>=' 0.7) |"
}

make_plots() {
  rm -f "$PLOTS"/rps-vs-direct.png "$PLOTS"/p99.png "$PLOTS"/other.png
  local mcases="" c
  for c in $CASES; do case $c in small50|small400|1k|16k|post1m) mcases+="$c ";; esac; done
  PLOT_LINKS=""
  if [ -n "$mcases" ]; then
    # Matrix: one row per case, one column per proxy ("?" = not measured).
    awk -F'\t' -v cases="$mcases" '
      NR > 1 { r[$1 "/" $2] = $4; p[$1 "/" $2] = $8 }
      END {
        n = split(cases, cs, " "); split("direct outrigger haproxy nginx", ts, " ")
        print "case direct outrigger haproxy nginx" > "'"$OUT/plot-ratio.dat"'"
        print "case direct outrigger haproxy nginx" > "'"$OUT/plot-p99.dat"'"
        for (i = 1; i <= n; i++) {
          d = r[cs[i] "/direct"]; a = cs[i]; b = cs[i]
          for (j = 1; j <= 4; j++) {
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
plot "$OUT/plot-ratio.dat" using 2:xtic(1) title columnheader, '' using 3 title columnheader, '' using 4 title columnheader, '' using 5 title columnheader
set output "$PLOTS/p99.png"
set title "p99 latency (ms, log scale); lower is better"
set logscale y
set yrange [*:*]
plot "$OUT/plot-p99.dat" using 2:xtic(1) title columnheader, '' using 3 title columnheader, '' using 4 title columnheader, '' using 5 title columnheader
EOF
    PLOT_LINKS+="![req/s relative to direct](plots/rps-vs-direct.png)"$'\n\n'"![p99 latency](plots/p99.png)"$'\n\n'
  fi
  awk -F'\t' 'NR > 1 && ($1 == "demo" || $1 == "features" || $1 == "redirect") { print $1 ":" $2, $4 }' \
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
    echo "- tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | sed 's/.*: //')"
    echo "- runs: ${DUR} s each (after a ${WARM} s warm-up), $REPS repetition(s), interleaved (every target of every case once per repetition), \`wrk -t$WRK_THREADS --timeout 5s\`; medians over repetitions, req/s spread as min–max"
    echo "- cores: $PIN_NOTE"
    [ "$QUICK" = 1 ] && echo "- **QUICK=1 smoke run: numbers are not meaningful as a benchmark**"
    echo
    echo "## Requests/s and latency"
    echo
    for c in $CASES; do case_def "$c"; echo "- \`$c\`: $C_DESC"; done
    echo
    results_table
    echo
    echo "CPU and RSS columns are for the process(es) under test: the proxy (the demo's edge+sidecar row sums both sidecars), or for \`direct\` rows the upstream itself. RSS sums a process tree (nginx: master + worker)."
    echo
    echo "## Memory"
    echo
    resources_table
    echo
    echo "## Targets"
    echo
    targets_table
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
    for notes in PROFILE.md SOAK.md; do
      if [ -f "$BENCH_DIR/$notes" ]; then
        echo
        cat "$BENCH_DIR/$notes"
      fi
    done
  } >"$md"
  echo
  results_table
  echo
  resources_table
  echo
  targets_table
  echo
  log "wrote bench/RESULTS.md and bench/plots/ (raw: bench/out/results.tsv)"
}
