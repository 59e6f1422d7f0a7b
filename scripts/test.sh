#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Python packages, Docker engine,
# busybox), then runs unit, runtime, integration and collection tests (they start and stop a private dockerd),
# the collection's quality gates and the molecule scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
export SWARMCTL_REQUIRE_DOCKER=1    # the service tests must run on a real engine, never skip
export SWARMCTL_REQUIRE_ANSIBLE=1   # and the collection's modules under real ansible
# Tests stop only the processes they started (by pid); a test whose addresses are taken (say by the
# daemons of an interrupted earlier run) fails and names the address instead of killing anything.
python3 -m pytest -q -p no:cacheprovider --timeout=300 --durations=25 tests "$@"
# the Ansible collection's quality gates (ansible-test sanity, ansible-lint production, build, install, ansible-doc)
bash scripts/collection-checks.sh
# molecule: the local 5-node swarm formed, scaled out and upgraded by the playbooks over SSH
bash scripts/molecule.sh
# nothing the tests started is left behind: no mesh or fault-test tables (nftables), no swarmctl processes,
# no tmpfs of task files
left=$( (nft list tables 2>/dev/null || true) | grep -E ' swarmctl_' || true)
procs=$(pgrep -af 'swarmctl(\.mesh\.proxy| daemon| hollow)' | grep -v pgrep || true)
mounts=$(awk '$3 == "tmpfs" && $2 ~ /\.files$/ {print $2}' /proc/mounts | grep -i swarmctl || true)  # task files
if [ -n "$left$procs$mounts" ]; then
  echo "left behind by the tests:" >&2
  printf '%s\n%s\n%s\n' "$left" "$procs" "$mounts" >&2
  exit 1
fi
