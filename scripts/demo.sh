#!/usr/bin/env bash
# The main demo: install everything, then form a local 5-node swarm with this collection's Ansible playbooks.
#
#   scripts/demo.sh        1. scripts/setup.sh --system (Python deps, docker.io, busybox, openssh-server)
#                             and ansible-core 2.19 (pip)
#                          2. the private Docker engine (scripts/dockerd.sh start) and the offline test image
#                             (scripts/build-test-image.sh)
#                          3. a private sshd on 127.0.0.11-19:22 (scripts/sshd.sh start)
#                          4. ansible-playbook -i inventory/local playbooks/site.yml: 3 managers (127.0.0.11-13) and
#                             2 workers (127.0.0.14-15), each its own daemon reached over SSH, and the service
#                             demo-web (3 replicas of busybox httpd, published on port 8080 by the routing mesh),
#                             the secret demo_greeting and the stack demo (inventory/local-files/demo-stack.yml: a
#                             front on port 8081 that asks its backend by name; the backend reads the secret)
#                          5. prints `swarmctl node ls`, `swarmctl service ls`, `swarmctl service ps demo-web`, and
#                             an HTTP answer of port 8080 at every node's address (the workers run no replica),
#                             then `swarmctl stack services demo` and the front's answer at every node's port 8081
#   scripts/demo.sh down   playbooks/teardown.yml (services removed, nodes leave, daemons uninstalled, data
#                          removed), then stops the sshd and the dockerd this script started (not ones that
#                          already ran), and checks that no daemon or container of the demo is left.
#
# Run as root on Debian. What `up` started is recorded under /tmp/swarmctl-demo-state (SWARMCTL_DEMO_STATE).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${SWARMCTL_DEMO_STATE:-/tmp/swarmctl-demo-state}
LOCAL_ROOT=/tmp/swarmctl-local            # inventory/local: swarmctl_home is $LOCAL_ROOT/<host>
DOCKER_URL=unix:///tmp/swarmctl-dockerd/docker.sock
SERVICE=demo-web
NODE_IPS=(127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14 127.0.0.15)
WEB_URL=http://127.0.0.11:8888/              # the web view: inventory/local/host_vars/manager1.yml swarmctl_web_addr
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}

say() { printf '\n==> %s\n' "$*"; }

swarmctl_m1() {  # the CLI of manager1's virtualenv, talking to manager1's daemon
  "$LOCAL_ROOT/manager1/venv/bin/swarmctl" -H "unix://$LOCAL_ROOT/manager1/swarmctl.sock" "$@"
}

link_collection() {  # ansible.cfg's collections_path finds swarmctl.cluster (this checkout) through this link
  mkdir -p .ansible/collections/ansible_collections/swarmctl
  ln -sfn ../../../.. .ansible/collections/ansible_collections/swarmctl/cluster
}

start_unless_running() {  # start_unless_running dockerd|sshd: use a running one, else start it and note so for `down`
  if "scripts/$1.sh" status >/dev/null 2>&1; then
    echo "scripts/$1.sh's $1 already runs: using it (demo.sh down will leave it running)"
  else
    "scripts/$1.sh" start
    touch "$STATE/$1.started"
  fi
}

close_ssh_masters() {  # Ansible's persistent SSH connections (ControlPersist) end now instead of in 30 s
  bash scripts/sshd.sh close-masters
}

our_daemons() {  # swarmctl daemons of this demo (their command lines name $LOCAL_ROOT)
  pgrep -af 'swarmctl.cli.main daemon|swarmctl daemon' | grep -F -- "$LOCAL_ROOT/" || true
}

http_get() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())
except Exception as exc:
    print("no answer: %s" % exc)
    sys.exit(1)
EOF
}

up() {
  local t0 t1
  mkdir -p "$STATE"
  say "Installing system and Python packages (scripts/setup.sh --system) and ansible-core 2.19"
  bash scripts/setup.sh --system
  python3 -m pip install -q --disable-pip-version-check 'ansible-core>=2.19,<2.20' 2>&1 \
    | grep -v -e 'Running pip as the .root. user' -e '^WARNING: Location' || true
  ansible-playbook --version | head -n 1

  say "Private Docker engine ($DOCKER_URL) and the test image"
  start_unless_running dockerd
  scripts/build-test-image.sh "$DOCKER_URL"

  say "Private sshd for the inventory hosts 127.0.0.11-19 (scripts/sshd.sh start)"
  start_unless_running sshd

  link_collection
  say "ansible-playbook -i inventory/local playbooks/site.yml"
  t0=$(date +%s%N)
  ansible-playbook -i inventory/local playbooks/site.yml
  t1=$(date +%s%N)
  echo "site.yml took $(( (t1 - t0) / 1000000000 )).$(( (t1 - t0) / 100000000 % 10 )) s"
  swarmctl_m1 node ls -q > "$STATE/node-ids"

  say "swarmctl node ls   (manager1's daemon)"
  swarmctl_m1 node ls
  say "swarmctl service ls"
  swarmctl_m1 service ls
  say "swarmctl service ps $SERVICE"
  swarmctl_m1 service ps "$SERVICE"
  say "HTTP answers of $SERVICE's published port 8080 at every node's address (the routing mesh)"
  local ip answered=0
  for ip in "${NODE_IPS[@]}"; do
    printf 'http://%s:8080/  ->  ' "$ip"
    if http_get "http://$ip:8080/"; then answered=$((answered + 1)); fi
  done
  echo "$answered of ${#NODE_IPS[@]} node addresses answered"
  say "swarmctl stack services demo   (inventory/local-files/demo-stack.yml, with the secret demo_greeting)"
  swarmctl_m1 stack services demo
  say "The stack's front on port 8081: it asks its backend by the short name 'backend', the backend reads its secret"
  local tries body="" stack_answered=0
  for ip in "${NODE_IPS[@]}"; do
    printf 'http://%s:8081/  ->  ' "$ip"
    for tries in 1 2 3 4 5 6 7 8 9 10; do  # bounded: the front asks the backend every 2 s
      if body=$(http_get "http://$ip:8081/" 2>/dev/null) && [[ "$body" == *"asked backend"* ]]; then break; fi
      sleep 1
    done
    echo "${body:-no answer}"
    [[ "${body:-}" == *"asked backend"* ]] && stack_answered=$((stack_answered + 1))
  done
  echo "$stack_answered of ${#NODE_IPS[@]} node addresses answered with the backend's data"
  say "The live web view on manager1 (inventory/local/host_vars/manager1.yml: swarmctl_web_addr)"
  printf '%s  ->  ' "$WEB_URL"
  if http_get "${WEB_URL}api/snapshot" >/dev/null 2>&1; then echo "answers"; else echo "no answer"; fi
  close_ssh_masters
  cat <<EOF

Web view (nodes, tasks and services, live):  $WEB_URL

Try:  $LOCAL_ROOT/manager2/venv/bin/swarmctl -H unix://$LOCAL_ROOT/manager2/swarmctl.sock node ls
      ansible-playbook -i inventory/local playbooks/site.yml      # again: changes nothing
      ansible-playbook -i inventory/local playbooks/upgrade.yml -e swarmctl_force_restart=true   # rolling restart
Stop: scripts/demo.sh down
EOF
}

down() {
  local started_sshd=0 rc=0 pidfile pid left ids=""
  mkdir -p "$STATE"
  [[ -f "$STATE/node-ids" ]] && ids=$(cat "$STATE/node-ids")
  if [[ -d "$LOCAL_ROOT" ]] && command -v ansible-playbook >/dev/null; then
    if ! scripts/sshd.sh status >/dev/null 2>&1; then
      scripts/sshd.sh start
      started_sshd=1
    fi
    link_collection
    say "ansible-playbook -i inventory/local playbooks/teardown.yml"
    ansible-playbook -i inventory/local playbooks/teardown.yml || rc=$?
    close_ssh_masters
    if [[ $started_sshd == 1 ]]; then scripts/sshd.sh stop; fi
  fi
  if [[ -n "$(our_daemons)" ]]; then
    # teardown.yml failed or could not reach the hosts: stop the daemons by their pidfiles
    echo "teardown.yml left daemons running (exit $rc): stopping them by their pidfiles" >&2
    for pidfile in "$LOCAL_ROOT"/*/run/swarmctl.pid; do
      [[ -f "$pidfile" ]] || continue
      pid=$(tr -dc '0-9' < "$pidfile")
      if [[ -n "$pid" ]] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$LOCAL_ROOT/"; then
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done
    sleep 2
    rm -rf "$LOCAL_ROOT"
  fi
  if [[ -n "$ids" ]] && docker -H "$DOCKER_URL" info >/dev/null 2>&1; then
    for id in $ids; do
      left=$(docker -H "$DOCKER_URL" ps -aq --filter "label=swarmctl.node.id=$id")
      # shellcheck disable=SC2086
      [[ -z "$left" ]] || docker -H "$DOCKER_URL" rm -f $left >/dev/null
    done
  fi
  rmdir "$LOCAL_ROOT" 2>/dev/null || true
  rm -rf /tmp/swarmctl-ansible-src   # the controller's packed source (inventory/local swarmctl_controller_cache_dir)

  say "Checking that nothing of the demo is left"
  local failed=0 n
  left=$(our_daemons)
  if [[ -n "$left" ]]; then
    echo "LEFT: swarmctl daemons of the demo still run:"; echo "$left"; failed=1
  else
    echo "ok: no swarmctl daemon of the demo runs (pgrep -af 'swarmctl.cli.main daemon|swarmctl daemon')"
  fi
  n=$( (pgrep -af 'swarmctl.cli.main daemon|swarmctl daemon' || true) | (grep -vF -- "$LOCAL_ROOT/" || true) | wc -l)
  [[ $n == 0 ]] || echo "note: $n swarmctl daemon(s) of something else run (not started by the demo; left alone)"
  if docker -H "$DOCKER_URL" info >/dev/null 2>&1; then
    left=""
    for id in $ids; do left+=$(docker -H "$DOCKER_URL" ps -aq --filter "label=swarmctl.node.id=$id"); done
    if [[ -n "$left" ]]; then
      echo "LEFT: containers of the demo's nodes: $left"; failed=1
    else
      echo "ok: no container of the demo's nodes in the engine (label swarmctl.node.id)"
    fi
    n=$( (docker -H "$DOCKER_URL" ps -aq --filter label=swarmctl.node.id || true) | wc -l)
    [[ $n == 0 ]] || echo "note: $n container(s) of other swarmctl nodes (not the demo's) are in the engine"
  fi
  if [[ -e "$LOCAL_ROOT" ]]; then echo "LEFT: $LOCAL_ROOT"; failed=1; else echo "ok: $LOCAL_ROOT is gone"; fi

  if [[ -f "$STATE/sshd.started" ]]; then
    scripts/sshd.sh stop
  else
    echo "sshd: not started by demo.sh, left as it is"
  fi
  if [[ -f "$STATE/dockerd.started" ]]; then
    scripts/dockerd.sh stop
    echo "dockerd stopped (demo.sh had started it)"
  else
    echo "dockerd: not started by demo.sh, left running"
  fi
  rm -rf "$STATE"
  if [[ $failed == 0 ]]; then
    echo "demo stopped: nothing of it is left"
  else
    echo "demo stopped, but something was left (see above)" >&2
    exit 1
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
