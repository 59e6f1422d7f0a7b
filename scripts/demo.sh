#!/usr/bin/env bash
# Forms a local 5-node swarm (3 managers, 2 workers) on 127.0.0.11-15 and shows it.
# Stop it with: scripts/demo.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${SWARMCTL_DEMO_DIR:-/tmp/swarmctl-demo}
SW="python3 -m swarmctl.cli.main"
if [[ "${1:-}" == "down" ]]; then
  for pidfile in "$ROOT"/*.pid; do [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true; done
  rm -rf "$ROOT"; echo "demo swarm stopped"; exit 0
fi
bash scripts/setup.sh
mkdir -p "$ROOT"
for i in 1 2 3 4 5; do
  ip=127.0.0.1$i
  $SW daemon --data-dir "$ROOT/node$i" --advertise-addr "$ip" --socket "$ROOT/node$i.sock" \
     --hostname "node$i" >"$ROOT/node$i.log" 2>&1 &
  echo $! >"$ROOT/node$i.pid"
done
for i in 1 2 3 4 5; do for _ in $(seq 100); do [[ -S $ROOT/node$i.sock ]] && break; sleep 0.1; done; done
export SWARMCTL_HOST=unix://$ROOT/node1.sock
$SW swarm init --advertise-addr 127.0.0.11
MT=$($SW swarm join-token -q manager); WT=$($SW swarm join-token -q worker)
for i in 2 3; do SWARMCTL_HOST=unix://$ROOT/node$i.sock $SW swarm join --token "$MT" 127.0.0.11:2377; done
for i in 4 5; do SWARMCTL_HOST=unix://$ROOT/node$i.sock $SW swarm join --token "$WT" 127.0.0.11:2377; done
sleep 2
$SW node ls
echo; echo "Try: SWARMCTL_HOST=unix://$ROOT/node2.sock $SW node ls    Stop: scripts/demo.sh down"
