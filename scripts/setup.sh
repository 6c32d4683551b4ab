#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: when everything is present it prints one line and touches nothing;
# `apt-get update` runs only when something must be installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev node-llhttp libssl-dev libyaml-dev libcriterion-dev libsqlite3-dev
  curl sqlite3 procps iproute2
  # promtool, for `promtool check metrics` in tests/integration/test_admin_metrics.c
  prometheus
  # etcd, the registry's store (SPEC §12): the registry tests and the demo start it
  etcd-server
)
# Benchmarks only: `scripts/setup.sh --bench` adds them.
BENCH_PACKAGES=(wrk haproxy nginx-light h2o gnuplot-nox valgrind)

want=("${PACKAGES[@]}")
if [ "${1:-}" = "--bench" ]; then want+=("${BENCH_PACKAGES[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run this as root (or install sudo) so apt-get can install them" >&2
    exit 1
  }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# nginx/haproxy/h2o packages start system services on install; the benchmarks run their
# own instances on loopback ports, so stop the system ones if they were started (and the
# Prometheus server that comes with promtool, which nothing here uses).
for svc in nginx haproxy h2o prometheus; do
  if command -v service >/dev/null 2>&1; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "setup: done"
