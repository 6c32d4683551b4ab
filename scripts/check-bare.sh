#!/usr/bin/env bash
# Checks the README's promise on a bare Debian 12: apt and git, no compiler, no python3.
# It debootstraps a minimal bookworm into a folder, adds git, clones this repository's
# HEAD into /root there (root's home is mode 700, as on a real machine), and runs the
# README's two commands inside it:
#   1. scripts/demo.sh for DEMO_SECONDS, with a POST and a redirect through the edge;
#   2. .ci/run (scripts/test.sh), with CI=true and a clean environment.
# Needs root and the host's apt mirror (debootstrap's default for bookworm). The chroot
# shares the host's network namespace, so the demo's and the benchmarks' loopback ports
# must be free. Only committed work is checked: the clone is of HEAD.
#
#   scripts/check-bare.sh            build in a new /tmp/outrigger-bare.XXXXXX, removed after
#   KEEP=1 scripts/check-bare.sh     leave the folder for a look (its mounts are undone)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "check-bare: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null 2>&1 || {
  echo "check-bare: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
}

DIR=$(mktemp -d /tmp/outrigger-bare.XXXXXX)
chmod 755 "$DIR"   # it becomes /: every user must be able to walk it
DEMO_SECONDS=${DEMO_SECONDS:-30}
demo_pid=""

undo() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$demo_pid" ]; then kill -TERM "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  for m in mnt/src sys dev proc; do umount -R "$DIR/$m" 2>/dev/null || true; done
  # Never delete through a mount that is still there (it would reach the host's /dev
  # or this repository).
  if grep -q " $DIR/" /proc/mounts; then
    echo "check-bare: mounts remain under $DIR; not removing it" >&2
  elif [ "${KEEP:-0}" = 1 ]; then
    echo "check-bare: kept $DIR"
  else
    rm -rf --one-file-system "$DIR"
  fi
  exit "$rc"
}
trap undo EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_chroot CMD: runs CMD under bash in the chroot with a minimal environment.
in_chroot() {
  chroot "$DIR" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb LANG=C.UTF-8 "$@"
}

echo "check-bare: debootstrap bookworm (minbase) into $DIR"
debootstrap --variant=minbase bookworm "$DIR" >"$DIR.debootstrap.log" 2>&1 ||
  { tail -20 "$DIR.debootstrap.log"; exit 1; }
rm -f "$DIR.debootstrap.log"
mount -t proc proc "$DIR/proc"
mount --rbind /dev "$DIR/dev"
mount --rbind /sys "$DIR/sys"
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
mkdir -p "$DIR/mnt/src"
mount --bind "$ROOT" "$DIR/mnt/src"
mount -o remount,bind,ro "$DIR/mnt/src"

echo "check-bare: apt-get install git, then forget the package lists (as on a new machine)"
in_chroot bash -c 'export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq git >/dev/null 2>&1 && rm -rf /var/lib/apt/lists/*'
for tool in cc gcc cmake python3 curl; do
  if in_chroot bash -c "command -v $tool" >/dev/null; then echo "check-bare: $tool is already there; not bare" >&2; exit 1; fi
done
in_chroot git clone -q /mnt/src /root/outrigger
echo "check-bare: cloned $(in_chroot git -C /root/outrigger log --oneline -1)"

echo "check-bare: (a) scripts/demo.sh for ${DEMO_SECONDS}s"
for p in 8080 8001 8002 8003 9001 9002 9003 15000 15001 15002 15003; do
  port_free "$p" || { echo "check-bare: port $p is in use on the host" >&2; exit 1; }
done
in_chroot bash -c "cd /root/outrigger && DEMO_SECONDS=$DEMO_SECONDS scripts/demo.sh" >"$DIR/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 600); do
  grep -q "demo is running" "$DIR/demo.log" && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 1
done
grep -q "demo is running" "$DIR/demo.log" || { cat "$DIR/demo.log"; echo "check-bare: demo did not start" >&2; exit 1; }
created=$(in_chroot curl -s -X POST http://127.0.0.1:8080/api/links -d '{"url":"https://example.com/bare"}')
code=$(printf '%s' "$created" | sed -n 's/.*"code": *"\([^"]*\)".*/\1/p')
[ -n "$code" ] || { echo "check-bare: POST through the edge gave: $created" >&2; exit 1; }
answer=$(in_chroot curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:8080/$code")
[ "$answer" = "302 https://example.com/bare" ] || { echo "check-bare: GET /$code gave '$answer'" >&2; exit 1; }
echo "check-bare: demo ok (POST made $code, GET /$code gave $answer)"
wait "$demo_pid" || true
demo_pid=""
grep -q "demo: stopped" "$DIR/demo.log" || { cat "$DIR/demo.log"; echo "check-bare: demo did not stop cleanly" >&2; exit 1; }

echo "check-bare: (b) .ci/run"
if ! in_chroot CI=true bash -c 'cd /root/outrigger && bash .ci/run' >"$DIR/test.log" 2>&1; then
  tail -60 "$DIR/test.log"
  echo "check-bare: the test command failed (log above)" >&2
  exit 1
fi
grep -E "tests passed|test: all passed" "$DIR/test.log"
echo "check-bare: both commands work on a bare Debian 12"
