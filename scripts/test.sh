#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# daemons of an interrupted earlier run would hold the loopback addresses the tests use
pkill -f 'swarmctl.cli.main daemon' 2>/dev/null || true
python3 -m pytest -q -p no:cacheprovider --timeout=300 tests "$@"
