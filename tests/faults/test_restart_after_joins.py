"""A manager killed right after it took the joins of the others, and restarted, must rejoin.

The first manager of a new swarm takes both manager joins, then is SIGKILLed within milliseconds: before it
has saved raft/members.json again (once a second) and before its lazily written commit index covers the
joins. It restarts with an older member list and older node records than its own journal holds. It used to
refuse the two other managers for good ("127.0.0.13:2378 is not a Raft member here", "... is not a current
manager"), since those are exactly the changes it had not applied yet, and so it never caught up (1 run in 6
of tests/faults/test_stale_reads.py failed that way). Three fresh clusters, each bounded in time."""

import os
import shutil
import signal
import tempfile
import time

from tests.faults.cluster import FaultCluster
from tests.faults.load import info
from tests.faults.nemesis import wait_following

ROUNDS = 3


def test_first_manager_killed_right_after_the_joins_rejoins(figures):
    rejoin = []
    for _ in range(ROUNDS):
        root = tempfile.mkdtemp(prefix="swarmctl-rejoin-")
        cluster = FaultCluster(root)
        ok = False
        try:
            managers, _ = cluster.form(managers=3, workers=0)
            first = managers[0]
            first.stop(signal.SIGKILL)  # at once: raft/members.json and the commit hint lag behind the journal
            first.start(wait=False)
            start = time.monotonic()
            wait_following(first, managers, timeout=30)
            deadline = time.monotonic() + 20  # and it holds the records of the joins: all 3 managers listed
            while time.monotonic() < deadline:
                mine = info(first, timeout=1.0) or {}
                if len(((mine.get("raft") or {}).get("members") or [])) == 3:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"{first.name} does not list 3 Raft members: {info(first)}\n{first.tail()}")
            rejoin.append(time.monotonic() - start)
            ok = True
        finally:
            cluster.close()
            if ok and os.environ.get("SWARMCTL_KEEP_LOGS") is None:
                shutil.rmtree(root, ignore_errors=True)
    figures(f"first manager killed right after 2 joins, restarted: following again after "
            + ", ".join(f"{t:.1f}" for t in rejoin) + " s")
