#!/usr/bin/env bash
# A private sshd so Ansible can reach "hosts" 127.0.0.11-19 of this one machine over real SSH (run as root).
#
#   scripts/sshd.sh start    install openssh-server if missing, create the key, start sshd unless it runs
#   scripts/sshd.sh stop     stop this sshd (by its own pidfile; nothing else is touched)
#   scripts/sshd.sh status   exit 0 if it runs, print its pid and addresses
#   scripts/sshd.sh close-masters  end Ansible's persistent SSH connections (ansible.cfg's ControlPersist
#                            masters in /tmp/swarmctl-ansible-cp) now instead of 30 s after the last task
#
# Files (DIR defaults to /tmp/swarmctl-sshd, override with SWARMCTL_SSHD_DIR):
#   DIR/sshd_config          ListenAddress 127.0.0.11:22 ... 127.0.0.19:22 only (never 0.0.0.0),
#                            PermitRootLogin prohibit-password, public-key authentication only
#   DIR/ssh_host_ed25519_key this sshd's host key (kept across restarts)
#   DIR/sshd.pid             pidfile written by sshd
#   DIR/sshd.log             sshd's log (-E)
#   DIR/known_hosts          the host key for every listen address; inventory/local points ssh at it
#                            (UserKnownHostsFile), so strict host key checking stays on and
#                            /root/.ssh/known_hosts is not touched
# The client key is /root/.ssh/swarmctl_local_ed25519 (override with SWARMCTL_SSH_KEY); its public key is
# added once to /root/.ssh/authorized_keys. `stop` keeps the key, the host key and the config.
set -euo pipefail

CMD="${1:-}"
DIR="${SWARMCTL_SSHD_DIR:-/tmp/swarmctl-sshd}"
DIR="${DIR%/}"
KEY="${SWARMCTL_SSH_KEY:-/root/.ssh/swarmctl_local_ed25519}"
ADDRS=(127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15 127.0.0.16 127.0.0.17 127.0.0.18 127.0.0.19)
PORT=22
CONFIG="$DIR/sshd_config"
HOSTKEY="$DIR/ssh_host_ed25519_key"
PIDFILE="$DIR/sshd.pid"
LOG="$DIR/sshd.log"
KNOWN="$DIR/known_hosts"

CONTROL_DIR=/tmp/swarmctl-ansible-cp  # ansible.cfg control_path_dir

usage() { echo "usage: $0 start|stop|status|close-masters" >&2; exit 2; }

do_close_masters() {
  local s
  for s in "$CONTROL_DIR"/*; do
    [[ -S "$s" ]] && ssh -o ControlPath="$s" -O exit swarmctl-local >/dev/null 2>&1 || true
  done
  return 0
}

sshd_pid() {  # pid of this sshd, if it is alive and really an sshd started with this config
  [[ -s "$PIDFILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' < "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $CONFIG" || return 1
  echo "$pid"
}

install_sshd() {
  [[ -x /usr/sbin/sshd ]] && return 0
  echo "installing openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq openssh-server >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null; }
}

client_key() {
  mkdir -p "$(dirname "$KEY")"
  chmod 700 "$(dirname "$KEY")"
  [[ -f "$KEY" ]] || ssh-keygen -q -t ed25519 -N '' -C swarmctl-local -f "$KEY"
  local auth=/root/.ssh/authorized_keys pub
  pub="$(cat "$KEY.pub")"
  touch "$auth"
  chmod 600 "$auth"
  grep -qxF "$pub" "$auth" || echo "$pub" >> "$auth"
}

write_config() {
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  [[ -f "$HOSTKEY" ]] || ssh-keygen -q -t ed25519 -N '' -C swarmctl-local-sshd -f "$HOSTKEY"
  {
    echo "# private sshd of scripts/sshd.sh (swarmctl local inventory); loopback addresses only"
    for a in "${ADDRS[@]}"; do echo "ListenAddress $a:$PORT"; done
    cat <<EOF
HostKey $HOSTKEY
PidFile $PIDFILE
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  } > "$CONFIG.new"
  mv "$CONFIG.new" "$CONFIG"
  local hostpub line=""
  hostpub="$(cut -d' ' -f1,2 < "$HOSTKEY.pub")"
  for a in "${ADDRS[@]}"; do line+="${line:+,}$a"; done
  echo "$line $hostpub" > "$KNOWN"
}

answers() {  # the banner of every listen address
  local a
  for a in "${ADDRS[@]}"; do
    timeout 2 bash -c "exec 3<>/dev/tcp/$a/$PORT && head -c 4 <&3" 2>/dev/null | grep -q SSH || return 1
  done
}

do_start() {
  install_sshd
  client_key
  if pid="$(sshd_pid)"; then
    echo "sshd already runs (pid $pid) on ${ADDRS[0]}-${ADDRS[-1]##*.}:$PORT"
    return 0
  fi
  write_config
  mkdir -p /run/sshd   # privilege separation directory
  chmod 755 /run/sshd
  /usr/sbin/sshd -t -f "$CONFIG"
  rm -f "$PIDFILE"
  /usr/sbin/sshd -f "$CONFIG" -E "$LOG"   # forks into the background and writes PidFile
  local i
  for ((i = 0; i < 50; i++)); do
    if sshd_pid >/dev/null && answers; then
      echo "sshd started (pid $(sshd_pid)) on ${ADDRS[0]}-${ADDRS[-1]##*.}:$PORT; key $KEY; known_hosts $KNOWN"
      return 0
    fi
    sleep 0.1
  done
  echo "sshd did not come up; last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2 || true
  return 1
}

do_stop() {
  local pid i
  if ! pid="$(sshd_pid)"; then
    echo "sshd (scripts/sshd.sh) is not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "sshd stopped (pid $pid)"
}

do_status() {
  local pid
  if pid="$(sshd_pid)"; then
    echo "sshd runs (pid $pid) on ${ADDRS[*]} port $PORT"
    return 0
  fi
  echo "sshd (scripts/sshd.sh) is not running"
  return 1
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  close-masters) do_close_masters ;;
  *) usage ;;
esac
