"""Write a node label through the managers every INTERVAL s until STOP_FILE exists (or the limits hit).

    writes.py --cli SWARMCTL --socket SOCK [--socket SOCK ...] --node NODE --stop-file F --out RESULT.json

Each write is `swarmctl -H unix://SOCK node update --label-add upgrade-write=N NODE`, tried on the sockets
in turn (a client failing over between managers), starting with the one that last worked. A round fails
when no manager accepted the write. RESULT.json: rounds, failed rounds, per-socket failures and the longest
time between two successful writes (longest_gap_s; about INTERVAL plus a write when none failed). Bounded: at most --max-rounds rounds and --max-seconds s.
"""

import argparse
import json
import os
import subprocess
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cli", required=True)
    p.add_argument("--socket", action="append", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.3)
    p.add_argument("--max-rounds", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=540)
    a = p.parse_args()

    start = time.monotonic()
    last_ok = start
    longest_gap = 0.0
    rounds = failed = 0
    socket_failures = {s: 0 for s in a.socket}
    first = 0
    errors = []
    while rounds < a.max_rounds and time.monotonic() - start < a.max_seconds and not os.path.exists(a.stop_file):
        rounds += 1
        ok = False
        for k in range(len(a.socket)):
            i = (first + k) % len(a.socket)
            sock = a.socket[i]
            try:
                res = subprocess.run([a.cli, "-H", f"unix://{sock}", "node", "update", "--label-add",
                                      f"upgrade-write={rounds}", a.node],
                                     capture_output=True, text=True, timeout=10, check=False)
                rc, msg = res.returncode, (res.stderr or res.stdout).strip()
            except subprocess.TimeoutExpired:
                rc, msg = -1, "timeout"
            if rc == 0:
                ok, first = True, i
                break
            socket_failures[sock] += 1
            if len(errors) < 50:
                errors.append(f"{time.monotonic() - start:.1f}s {sock}: {msg[:200]}")
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last_ok)  # time since the last successful write (or the start)
        if ok:
            last_ok = now
        else:
            failed += 1
        time.sleep(a.interval)

    result = {"rounds": rounds, "failed_rounds": failed, "longest_gap_s": round(longest_gap, 2),
              "duration_s": round(time.monotonic() - start, 1), "socket_failures": socket_failures,
              "stopped_by": "stop file" if os.path.exists(a.stop_file) else "limit", "errors": errors}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
