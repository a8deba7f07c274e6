"""A node away past the log's retention catches up by a snapshot larger than the old 64 MiB cap.

    python -m bench.snapshot_catchup [--incidents 40000] [--payload-bytes 2000] [--keep]

Three gateway nodes on loopback (real processes, mTLS links, fsync on). One follower is SIGKILLed; the
leader commits ``--incidents`` incidents of ~``--payload-bytes`` each (appended to its
``incidents/proposed`` as an edge's forwarded proposals are), so its state machine passes the cap a whole
snapshot once had, and its log is compacted past what the follower holds. The follower is started again:
it can only catch up by InstallSnapshot, which now travels as a file (``actors/raft/snapshot_file.py``).

Prints, from the same run: the snapshot's size next to the old cap (the baseline: before, a snapshot over
it was dropped and the node never caught up), the time from the restart to the snapshot installed and to
the follower's committed stream matching the leader's, and the peak RSS of the follower's processes next
to the snapshot's size (the old path held the whole snapshot in memory several times over).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from bench.cluster_commit import GATEWAYS, BenchCluster, api_incident
from bench.restart_latency import BenchError
from bench.scratch import run_in_scratch
from supervisors.thespian_env import processes_in_session

OLD_CAP = 64 << 20  # what the gateways reassembled of a snapshot before it became a file
APPEND_BATCH = 500


def wait(what: str, predicate: Any, timeout: float, poll: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(poll)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what}")


def peak_rss_mib(session: int | None) -> float:
    """The largest VmHWM (peak resident set) among the node's processes, in MiB."""
    peak = 0
    for pid in processes_in_session(session) if session else []:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    c = BenchCluster(tmp)
    try:
        c.start_all()
        leader = c.wait_for_leader()
        behind = next(n for n in GATEWAYS if n != leader)
        c.nodes[behind].kill()
        blob = "x" * args.payload_bytes
        log = c.log(leader)
        for lo in range(0, args.incidents, APPEND_BATCH):
            hi = min(lo + APPEND_BATCH, args.incidents)
            batch = [{**api_incident(f"catchup-{i}"), "payload": {"blob": blob}} for i in range(lo, hi)]
            log.append(PROPOSED_INCIDENTS, batch)
            # keep the replica's backlog short: it takes a bounded number of proposals per tick anyway
            wait(
                "the leader to commit",
                lambda h=hi: log.last_seq(COMMITTED_INCIDENTS) >= h - APPEND_BATCH,
                120,
            )
        wait("every incident committed", lambda: log.last_seq(COMMITTED_INCIDENTS) >= args.incidents, 300)
        c.close_logs()
        term_before = (c.raft_status(leader) or {}).get("term")
        restarted = time.monotonic()
        c.start(behind)
        node = c.nodes[behind]
        wait(
            "the snapshot installed",
            lambda: node.events("raft_snapshot_installed"),
            args.install_timeout,
            0.05,
        )
        installed_s = time.monotonic() - restarted
        installed = node.events("raft_snapshot_installed")[0]
        target = c.log(leader).last_seq(COMMITTED_INCIDENTS)
        wait(
            "the follower's committed stream",
            lambda: c.log(behind).last_seq(COMMITTED_INCIDENTS) >= target,
            300,
        )
        caught_up_s = time.monotonic() - restarted
        sending = c.nodes[leader].events("snapshot_sending")
        after = c.raft_status(leader) or {}
        return {
            "incidents": args.incidents,
            "snapshot_bytes": installed.get("bytes"),
            "snapshot_incidents": installed.get("incidents"),
            "pieces": installed.get("pieces"),
            "old_cap_bytes": OLD_CAP,
            "snapshot_over_old_cap": round((installed.get("bytes") or 0) / OLD_CAP, 2),
            "restart_to_installed_s": round(installed_s, 2),
            "restart_to_caught_up_s": round(caught_up_s, 2),
            "times_sent": len(sending),
            # the leader wrote the file in a thread: it kept sending heartbeats, so nobody deposed it
            "leader_kept": after.get("role") == "leader" and after.get("term") == term_before,
            "follower_peak_rss_mib": round(peak_rss_mib(node.node_session()), 1),
        }
    finally:
        c.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=40_000)
    parser.add_argument("--payload-bytes", type=int, default=2_000)
    parser.add_argument(
        "--install-timeout", type=float, default=600.0, help="seconds to wait for the install"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    result = run_in_scratch("garrison-catchup-", args.keep, lambda tmp: run(args, tmp))
    if result is None:
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
