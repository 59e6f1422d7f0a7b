#!/usr/bin/env bash
# The collection's molecule scenarios (tests/molecule/*): the local swarm of inventory/local, formed, checked and
# torn down by the playbooks over real SSH on 127.0.0.11-17.
#
#   scripts/molecule.sh              every scenario: default, scale_out, upgrade (in turn, each timed)
#   scripts/molecule.sh SCENARIO...  only these
#
# Installs molecule (pip); starts the private Docker engine (scripts/dockerd.sh, with the test image) and the
# private sshd (scripts/sshd.sh) unless they already run, and stops at the end only what it started. Makes the
# link .ansible/collections/ansible_collections/swarmctl/cluster -> this checkout. Exits non-zero when a
# scenario fails. Galaxy is not used (dependency step disabled, prerun off).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DOCKER_URL=unix:///tmp/swarmctl-dockerd/docker.sock
STARTED_DOCKERD=0
STARTED_SSHD=0

cleanup() {
  scripts/sshd.sh close-masters
  if [[ $STARTED_SSHD == 1 ]]; then scripts/sshd.sh stop || true; fi
  if [[ $STARTED_DOCKERD == 1 ]]; then scripts/dockerd.sh stop || true; echo "dockerd stopped (started by molecule.sh)"; fi
}
trap cleanup EXIT

python3 -m pip install -q --disable-pip-version-check 'molecule>=26' 'ansible-core>=2.19,<2.20' 2>&1 \
  | grep -v -e 'Running pip as the .root. user' -e '^WARNING: Location' || true
molecule --version | head -n 1

if scripts/dockerd.sh status >/dev/null 2>&1; then
  echo "private dockerd already runs at $DOCKER_URL: using it (left running)"
else
  scripts/dockerd.sh start
  STARTED_DOCKERD=1
fi
scripts/build-test-image.sh "$DOCKER_URL"
if scripts/sshd.sh status >/dev/null 2>&1; then
  echo "scripts/sshd.sh's sshd already runs: using it (left running)"
else
  scripts/sshd.sh start
  STARTED_SSHD=1
fi

mkdir -p .ansible/collections/ansible_collections/swarmctl
ln -sfn ../../../.. .ansible/collections/ansible_collections/swarmctl/cluster

export MOLECULE_GLOB='tests/molecule/*/molecule.yml'
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.ansible/collections"
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1

leftovers() {  # daemons of inventory/local and containers of swarmctl nodes still around
  local n=0 d c
  rmdir /tmp/swarmctl-local 2>/dev/null || true   # the hosts' common parent: teardown removes each host's home only
  d=$( (pgrep -af 'swarmctl.cli.main daemon|swarmctl daemon' || true) | (grep -F /tmp/swarmctl-local/ || true))
  c=$(docker -H "$DOCKER_URL" ps -aq --filter label=swarmctl.node.id 2>/dev/null || true)
  [[ -z "$d" ]] || { echo "LEFT: daemons: $d"; n=1; }
  [[ -z "$c" ]] || { echo "LEFT: containers with label swarmctl.node.id: $c"; n=1; }
  [[ ! -e /tmp/swarmctl-local ]] || { echo "LEFT: /tmp/swarmctl-local"; n=1; }
  return $n
}

if [[ $# -gt 0 ]]; then SCENARIOS=("$@"); else SCENARIOS=(default scale_out upgrade); fi
declare -A RESULT TIME
rc=0
for s in "${SCENARIOS[@]}"; do
  echo
  echo "==> molecule test -s $s"
  t0=$(date +%s)
  if molecule test -s "$s"; then RESULT[$s]=passed; else RESULT[$s]=FAILED; rc=1; fi
  if ! leftovers; then RESULT[$s]="${RESULT[$s]}, left something behind"; rc=1; fi
  TIME[$s]=$(( $(date +%s) - t0 ))
  echo "==> $s: ${RESULT[$s]} in ${TIME[$s]} s"
done

echo
echo "molecule scenarios:"
for s in "${SCENARIOS[@]}"; do printf '  %-10s %-8s %4s s\n' "$s" "${RESULT[$s]}" "${TIME[$s]}"; done
exit $rc
