#!/usr/bin/env bash
# Sets up, builds with AddressSanitizer + UndefinedBehaviorSanitizer, and runs every
# test (Criterion units and integration tests of the real binaries, through ctest),
# then a few-second smoke of the benchmark harness so it keeps working.
#   scripts/test.sh              everything
#   BENCH_SMOKE=0 scripts/test.sh   without the benchmark smoke
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

scripts/setup.sh
build build-san Sanitize
echo "test: ctest (build-san)"
(cd build-san && ctest --output-on-failure -j"$JOBS" --timeout 300)

if [ "${BENCH_SMOKE:-1}" = 1 ]; then
  echo "test: benchmark smoke (bench/run.sh, one 2 s case; results in bench/out/smoke)"
  mkdir -p bench/out/smoke
  CASES=small50 QUICK=1 RESULTS_MD=bench/out/smoke/RESULTS.md PLOTS_DIR=bench/out/smoke \
    bench/run.sh > bench/out/smoke/run.log 2>&1 || { cat bench/out/smoke/run.log; exit 1; }
  # The smoke counts only if Outrigger itself was measured, not skipped.
  if ! grep -qE '^\| *small50 *\| *outrigger *\| *[1-9]' bench/out/smoke/RESULTS.md; then
    cat bench/out/smoke/run.log
    echo "test: benchmark smoke did not measure outrigger" >&2
    exit 1
  fi
  echo "test: benchmark smoke ok"
fi
echo "test: all passed"
