#!/usr/bin/env bash
# A private Docker engine for tests and local experiments (run as root).
#
#   scripts/dockerd.sh start  [DIR]   start dockerd unless it already runs; waits until it answers (max 30 s)
#   scripts/dockerd.sh stop   [DIR]   stop it (SIGTERM by pidfile, wait; SIGKILL as a last resort)
#   scripts/dockerd.sh status [DIR]   exit 0 and print the socket URL if it runs and answers, else exit 1
#   scripts/dockerd.sh purge  [DIR]   stop, unmount whatever is left under DIR, then delete DIR
#
# DIR defaults to /tmp/swarmctl-dockerd (keep it short: unix socket paths are limited to 107 bytes):
#   DIR/docker.sock   engine API (unix:///tmp/swarmctl-dockerd/docker.sock)
#   DIR/docker.pid    dockerd's pidfile (written and removed by dockerd itself)
#   DIR/root          data root (images, containers; storage driver vfs)
#   DIR/exec          exec root; dockerd starts its own containerd there (DIR/exec/containerd/containerd.sock)
#   DIR/dockerd.log   dockerd (and its containerd) output
#
# No bridge network, no iptables rules and no masquerading are set up: containers run with network
# mode "host" or "none" only.  dockerd supervises its own containerd (its default behaviour when no
# system containerd socket exists at /run/containerd/containerd.sock); a clean stop of dockerd stops
# the running containers and that containerd too.
#
# Cleanup: `stop` leaves no dockerd, containerd or containerd-shim of this DIR running (it kills
# leftovers it finds by this DIR's containerd socket path, by pid).  The data stays in DIR so a
# later start is fast (the test image is kept); `purge` (or `stop` then `rm -rf DIR`) removes it.
set -euo pipefail

CMD="${1:-}"
DIR="${2:-/tmp/swarmctl-dockerd}"
DIR="${DIR%/}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/docker.pid"
LOG="$DIR/dockerd.log"
CTRD_SOCK="$DIR/exec/containerd/containerd.sock"
START_WAIT=30
STOP_WAIT=40   # dockerd's own shutdown timeout is 15 s per container stop, run in parallel

usage() { echo "usage: $0 start|stop|status|purge [DIR]" >&2; exit 2; }

dockerd_pid() {
  # prints the pid of the dockerd owning this DIR, if it is alive
  [[ -s "$PIDFILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' < "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # guard against pid reuse: the process must be a dockerd
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  echo "$pid"
}

answers() {
  if command -v docker >/dev/null 2>&1; then
    timeout 10 docker -H "unix://$SOCK" info >/dev/null 2>&1
  else
    timeout 10 curl -fsS --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1
  fi
}

leftover_pids() {
  # containerd and containerd-shim processes started for this DIR (their command lines name its socket
  # or state dir); dockerd normally stops them itself
  local p cmdline
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" == "$$" || "${p#/proc/}" == "$BASHPID" ]] && continue
    cmdline="$(tr '\0' ' ' 2>/dev/null < "$p/cmdline")" || continue
    case "$cmdline" in
      *"$CTRD_SOCK"*|*"--state $DIR/exec/containerd"*|*"$DIR/exec/containerd/"*) echo "${p#/proc/}" ;;
    esac
  done
}

children_of() {  # pids whose parent is one of the given pids
  local p stat ppid want=" $* "
  for p in /proc/[0-9]*; do
    stat="$(cat 2>/dev/null < "$p/stat")" || continue
    stat="${stat##*) }"          # drop "pid (comm) ", comm may hold spaces
    ppid="${stat#* }"; ppid="${ppid%% *}"
    if [[ "$want" == *" $ppid "* ]]; then echo "${p#/proc/}"; fi
  done
  return 0
}

do_status() {
  if dockerd_pid >/dev/null && answers; then
    echo "unix://$SOCK"
    return 0
  fi
  return 1
}

do_start() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 60 9
  if dockerd_pid >/dev/null; then
    local i
    for ((i = 0; i < START_WAIT * 5; i++)); do
      if answers; then echo "unix://$SOCK"; return 0; fi
      sleep 0.2
    done
    echo "dockerd (pid $(dockerd_pid)) runs but does not answer on $SOCK; see $LOG" >&2
    return 1
  fi
  command -v dockerd >/dev/null 2>&1 || { echo "dockerd is not installed (apt-get install docker.io)" >&2; return 1; }
  if [[ -S /run/containerd/containerd.sock ]]; then
    echo "warning: a system containerd answers at /run/containerd/containerd.sock; dockerd will use it" \
         "instead of starting its own" >&2
  fi
  # a stale socket or pidfile of a killed engine would make dockerd refuse to start
  rm -f "$SOCK" "$PIDFILE"
  mkdir -p "$DIR/root" "$DIR/exec"
  echo "=== $(date -Is) dockerd start" >> "$LOG"
  setsid dockerd \
    --data-root "$DIR/root" \
    --exec-root "$DIR/exec" \
    -H "unix://$SOCK" \
    --pidfile "$PIDFILE" \
    --storage-driver vfs \
    --iptables=false --ip-masq=false --bridge=none \
    </dev/null >>"$LOG" 2>&1 9>&- &
  local pid=$! i
  for ((i = 0; i < START_WAIT * 5; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dockerd exited during start; last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2
      return 1
    fi
    if [[ -S "$SOCK" ]] && answers; then
      echo "unix://$SOCK"
      return 0
    fi
    sleep 0.2
  done
  echo "dockerd (pid $pid) did not answer within ${START_WAIT}s; stopping it; last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  kill -TERM "$pid" 2>/dev/null || true
  sleep 2
  kill -KILL "$pid" 2>/dev/null || true
  return 1
}

wait_gone() {  # wait_gone SECONDS PID...
  local secs="$1" i p alive; shift
  for ((i = 0; i < secs * 10; i++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}

do_stop() {
  [[ -d "$DIR" ]] || return 0
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 60 9
  local pid
  if pid="$(dockerd_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$STOP_WAIT" "$pid"; then
      echo "dockerd (pid $pid) did not stop within ${STOP_WAIT}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 5 "$pid" || true
    fi
  fi
  # containerd (and shims) of this DIR normally exit with dockerd; after a crashed or killed dockerd
  # they, and the containers' processes under the shims, are left: kill the containers' init
  # processes (which ends their pid namespaces), then containerd and the shims
  local left kids
  left="$(leftover_pids | tr '\n' ' ')"
  if [[ -n "${left// /}" ]]; then
    # shellcheck disable=SC2086
    kids="$(children_of $left | tr '\n' ' ')"
    if [[ -n "${kids// /}" ]]; then
      # shellcheck disable=SC2086
      kill -KILL $kids 2>/dev/null || true
      # shellcheck disable=SC2086
      wait_gone 10 $kids || true
    fi
    # shellcheck disable=SC2086
    kill -TERM $left 2>/dev/null || true
    # shellcheck disable=SC2086
    if ! wait_gone 10 $left; then
      # shellcheck disable=SC2086
      kill -KILL $left 2>/dev/null || true
    fi
  fi
  # nothing of this engine runs now: drop the mounts it leaves under DIR (its network namespace
  # exec/netns/default always; after a crash also the data root's self bind mount and containers' shm)
  unmount_under "$DIR/"
  rm -f "$PIDFILE" "$SOCK"
  return 0
}

unmount_under() {  # unmount everything mounted below the prefix $1, deepest first
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$1" 'index($2, d) == 1 { print $2 }' /proc/self/mounts \
           | sort -r)
}

do_purge() {
  do_stop
  [[ -d "$DIR" ]] || return 0
  unmount_under "$DIR/"
  rm -rf "$DIR"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  purge) do_purge ;;
  *) usage ;;
esac
