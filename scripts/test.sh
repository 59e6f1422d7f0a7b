#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Python packages, Docker engine,
# busybox), then runs unit, runtime and integration tests. The tests start and stop a private dockerd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
export SWARMCTL_REQUIRE_DOCKER=1    # the service tests must run on a real engine, never skip
export SWARMCTL_REQUIRE_ANSIBLE=1   # and the collection's modules under real ansible
# daemons of an interrupted earlier run would hold the loopback addresses the tests use
pkill -f 'swarmctl.cli.main daemon' 2>/dev/null || true
python3 -m pytest -q -p no:cacheprovider --timeout=300 tests "$@"
