#!/usr/bin/env bash
# Installs what swarmctl needs on a fresh Debian machine (run as root): Python packages (with
# ansible-core and ansible-runner), and with --system also Debian's Docker engine, busybox, sshd, nftables (the fault suite's partitions)
# and chromium with chromium-driver (the web view's browser test, tests/integration/test_webview.py, through selenium).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--system" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io busybox-static openssh-server nftables chromium chromium-driver >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test,provision]'
