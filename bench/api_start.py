"""The HTTP API backend's start time and memory on a long committed log: duplicate check on disk vs in memory.

    python -m bench.api_start [--incidents N] [--keep]

Writes N committed incident records (the replica's shape, default 300,000) to a scratch event log, then
starts ``NodeBackend`` (the API's backend) over it in a fresh process and answers one repeated
``incident_id``, twice:

- ``in memory``: the log as an older garrison left it (records only, not indexed): the backend reads the
  whole committed stream into its ``incident_id -> index`` map at start, as every start did before
  ``actors.committed_index``;
- ``on disk``: the same log after the replica's one-time backfill (``committed_index.backfill``, timed
  too): the backend looks the id up with one LMDB get and starts its tail at the stream's end.

Each start runs in its own process, so its RSS growth is its own. Both must answer the repeat with the
same index, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from actors import committed_index
from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS
from bench.raft_commit import incident
from bench.restart_latency import BenchError
from bench.scratch import run_in_scratch

WRITE_BATCH = 5000
REPEATED = 7  # the committed index of the id proposed again


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc/self/status")


def write_log(data_dir: Path, count: int) -> None:
    log = EventLog(data_dir / "eventlog")
    try:
        for lo in range(1, count + 1, WRITE_BATCH):
            hi = min(count, lo + WRITE_BATCH - 1)
            records = [
                {"index": i, "incident": incident(f"inc-{i:09d}", i), "raft_index": i + 1}
                for i in range(lo, hi + 1)
            ]
            log.append(COMMITTED_INCIDENTS, records)
    finally:
        log.close()


def backfill(data_dir: Path) -> tuple[int, float]:
    log = EventLog(data_dir / "eventlog")
    try:
        t0 = time.perf_counter()
        indexed = committed_index.backfill(log)
        return indexed or 0, time.perf_counter() - t0
    finally:
        log.close()


def measure_start(data_dir: Path) -> dict[str, Any]:
    """In THIS process (a fresh one): the backend's start time, RSS growth, and its answer to a repeat."""
    from supervisors.peer.node_backend import NodeBackend

    async def run() -> dict[str, Any]:
        rss0 = _rss_mib()
        t0 = time.perf_counter()
        backend = NodeBackend(data_dir, "gw-1", "root/incident-log")
        await backend.start()
        started = time.perf_counter() - t0
        outcome = await backend.propose(incident(f"inc-{REPEATED:09d}", REPEATED))
        result = {
            "start_s": round(started, 3),
            "rss_growth_mib": round(_rss_mib() - rss0, 1),
            "indexed": backend.indexed,
            "map_entries": len(backend.index_of),
            "answer": [outcome.status, outcome.index],
        }
        await backend.close()
        return result

    return asyncio.run(run())


def start_in_child(data_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.api_start", "--measure", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"the measuring process failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["answer"] != ["duplicate", REPEATED]:
        raise BenchError(f"the repeat was answered {result['answer']}, not duplicate {REPEATED}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_start", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=300_000, help="committed incidents (300,000)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch event log")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure_start(args.measure)))
        return 0
    if args.incidents < REPEATED:
        parser.error(f"--incidents must be >= {REPEATED}")

    def both(tmp: Path) -> dict[str, Any]:
        write_log(tmp, args.incidents)
        in_memory = start_in_child(tmp)
        indexed, backfill_s = backfill(tmp)
        on_disk = start_in_child(tmp)
        if in_memory["indexed"] or not on_disk["indexed"] or indexed != args.incidents:
            raise BenchError(f"the cases did not run as named: {in_memory}, {on_disk}, indexed {indexed}")
        return {"in memory": in_memory, "on disk": on_disk, "backfill_s": round(backfill_s, 3)}

    ran = run_in_scratch("garrison-bench-api-start-", args.keep, both)
    if ran is None:
        return 1
    print(f"# NodeBackend start over {args.incidents:,} committed incidents, each start in a fresh process")
    print(f"{'case':<12}{'start s':>9}{'RSS growth MiB':>16}{'map entries':>13}")
    for case in ("in memory", "on disk"):
        r = ran[case]
        print(f"{case:<12}{r['start_s']:>9.3f}{r['rss_growth_mib']:>16.1f}{r['map_entries']:>13,}")
    print(f"# the replica's one-time backfill of that log: {ran['backfill_s']:.2f} s")
    print(json.dumps({"bench": "api_start", "incidents": args.incidents, **ran}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
