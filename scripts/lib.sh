# Shared by scripts/demo.sh and scripts/test.sh.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=$(nproc 2>/dev/null || echo 2)

# build DIR TYPE: configure and build quietly; on failure show the log and exit.
build() {
  local dir=$1 type=$2 log
  log=$(mktemp)
  echo "build: $type in $dir"
  if ! { cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE="$type" &&
         cmake --build "$ROOT/$dir" -j"$JOBS"; } >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    echo "build: FAILED" >&2
    exit 1
  fi
  rm -f "$log"
}

# wait_port PORT: until 127.0.0.1:PORT accepts, at most 10 s.
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

# port_free PORT: 0 when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
