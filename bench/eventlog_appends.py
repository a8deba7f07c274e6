"""Durable appends/s of ``EventLog.append`` (group commit) next to raw py-lmdb puts, in one run.

    python -m bench.eventlog_appends [--records N] [--repeats R] [--batches 1,10,100] [--max-seconds S]

For each batch size B, each repeat writes the same sensor-reading records (about 120 bytes once encoded)
into two fresh LMDB environments in a temporary directory:
- ``garrison``: ``EventLog.append("readings", chunk)`` per chunk of B records (one durable transaction per
  call: envelope encoding, sequence assignment, stream head update, commit with ``sync=True``);
- ``raw_lmdb``: ``env.begin(write=True)`` + one ``txn.put`` per record of its envelope, encoded before any
  clock, per chunk of B, on an environment opened with ``sync=True, metasync=True`` (the target's baseline);
- ``raw_lmdb_batched``: the same chunk's record-batch value (``encode_record_batch``, also encoded before
  any clock) in ONE ``txn.put``: garrison's storage layout with none of its work, so garrison / this ratio
  is what garrison's own code (encoding, sequencing, head, checks, ring) costs.
The sides are interleaved commit by commit (rotating which goes first), because the disk is shared and its
fsync latency drifts; a side's rate is its records / the time spent in its own commits. A configuration
writes ``max(N, 300 * B)`` records (B=100 makes 300 commits) or stops after ``--max-seconds`` of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from actors.eventlog import EventLog, encode_envelope, encode_record_batch

STREAM = "readings"
MAP_SIZE = 64 << 20  # EventLog's initial map size: both sides start equal
IMPLS = ("garrison", "raw_lmdb", "raw_lmdb_batched")


def sample_readings(count: int) -> list[dict[str, Any]]:
    """Readings shaped like the node-local ``readings`` stream contract."""
    pollutants = ("NO2", "SO2", "O3", "PM2_5")
    return [
        {
            "sensor": f"sensor-{i % 16:02d}",
            "pollutant": pollutants[i % len(pollutants)],
            "ts": 1_764_000_000.0 + i * 0.25,
            "value": round(20.0 + (i * 7919 % 1000) / 37.0, 3),
            "unit": "ug/m3",
            "location": f"plant-a/hall-{i % 4}",
            "source": "edge-1/sensors",
        }
        for i in range(count)
    ]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class GarrisonSide:
    """``EventLog.append`` per chunk: envelope encoding, sequence assignment, head update, durable commit."""

    def __init__(self, path: Path, records: list[dict[str, Any]], batch: int) -> None:
        self.log = EventLog(path)
        self.chunks = chunks(records, batch)

    def commit(self, i: int) -> int:
        self.log.append(STREAM, self.chunks[i])
        return len(self.chunks[i])

    def stored(self) -> int:
        return self.log.last_seq(STREAM)

    def close(self) -> None:
        self.log.close()


class RawSide:
    """``env.begin(write=True)`` + one ``put`` per record of its envelope, encoded before any clock."""

    def __init__(self, path: Path, records: list[dict[str, Any]], batch: int) -> None:
        prefix = STREAM.encode() + b"\x00"
        items = [(prefix + seq.to_bytes(8, "big"), encode_envelope(r)) for seq, r in enumerate(records, 1)]
        self.chunks = chunks(items, batch)
        self.records_per_chunk = [len(c) for c in self.chunks]
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), map_size=MAP_SIZE, max_dbs=8, sync=True, metasync=True, writemap=False, map_async=False
        )
        self.db = self.env.open_db(b"events")

    def commit(self, i: int) -> int:
        with self.env.begin(write=True, db=self.db) as txn:
            for key, value in self.chunks[i]:
                txn.put(key, value)
        return self.records_per_chunk[i]

    def stored(self) -> int:
        with self.env.begin(db=self.db) as txn:
            return int(txn.stat(self.db)["entries"])

    def close(self) -> None:
        self.env.close()


class RawBatchedSide(RawSide):
    """One ``put`` per chunk of the chunk's record-batch value, keyed by its last record's sequence."""

    def __init__(self, path: Path, records: list[dict[str, Any]], batch: int) -> None:
        super().__init__(path, records, batch)
        prefix = STREAM.encode() + b"\x00"
        self.chunks = []
        for last, chunk in zip(
            range(batch, len(records) + batch, batch), chunks(records, batch), strict=True
        ):
            key = prefix + min(last, len(records)).to_bytes(8, "big")
            self.chunks.append([(key, encode_record_batch(list(chunk)))])

    def stored(self) -> int:
        with self.env.begin(db=self.db) as txn:  # the values are keyed by their last record's sequence
            cursor = txn.cursor()
            return int.from_bytes(bytes(cursor.key())[-8:], "big") if cursor.last() else 0


@dataclass
class Run:
    records: int = 0
    commit_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second of time spent inside this side's own commits."""
        return self.records / (sum(self.commit_ms) / 1e3)


def run_interleaved(
    root: Path, records: list[dict[str, Any]], batch: int, max_seconds: float
) -> dict[str, Run]:
    """Commit chunk i on every side back to back (rotating which goes first), so that a shared disk's
    slow and fast moments hit all alike; stop after ``max_seconds`` of wall time."""
    sides = {
        "garrison": GarrisonSide(root / "garrison", records, batch),
        "raw_lmdb": RawSide(root / "raw", records, batch),
        "raw_lmdb_batched": RawBatchedSide(root / "raw-batched", records, batch),
    }
    runs = {name: Run() for name in IMPLS}
    try:
        began = time.perf_counter()
        for i in range(len(sides["garrison"].chunks)):
            for name in IMPLS[i % len(IMPLS) :] + IMPLS[: i % len(IMPLS)]:
                t = time.perf_counter()
                written = sides[name].commit(i)
                runs[name].commit_ms.append((time.perf_counter() - t) * 1e3)
                runs[name].records += written
            if time.perf_counter() - began > max_seconds:
                break
        for name, side in sides.items():
            if side.stored() != runs[name].records:
                raise RuntimeError(f"{name} holds {side.stored()} records, expected {runs[name].records}")
    finally:
        for side in sides.values():
            side.close()
    return runs


def fsync_floor(path: Path, count: int = 200, max_seconds: float = 2.0) -> list[float]:
    """Milliseconds of write(~150 B) + fsync on a plain file in the same directory: the disk's floor."""
    ms = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    began = time.perf_counter()
    try:
        for _ in range(count):
            t = time.perf_counter()
            os.write(fd, b"r" * 150)
            os.fsync(fd)
            ms.append((time.perf_counter() - t) * 1e3)
            if t - began > max_seconds:
                break
    finally:
        os.close(fd)
    return ms


def filesystem_of(path: Path) -> str:
    best, fstype = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1]
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, parts[2]
    return fstype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eventlog_appends", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--records", type=int, default=5000, help="records per configuration (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per configuration (default 3)")
    parser.add_argument(
        "--batches", default="1,10,100", help="comma-separated batch sizes (default 1,10,100)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="stop a configuration (both sides) after this many seconds (default 5)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary LMDB dirs")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.records < 1 or args.repeats < 1 or min(batches) < 1:
        parser.error("--records, --repeats and every batch size must be >= 1")

    root = Path(tempfile.mkdtemp(prefix="garrison-bench-eventlog-", dir=args.dir))
    load = os.getloadavg()[0]
    began = time.monotonic()
    rates: dict[tuple[str, int], list[float]] = {(i, b): [] for i in IMPLS for b in batches}
    commit_ms: dict[tuple[str, int], list[float]] = {(i, b): [] for i in IMPLS for b in batches}
    record_bytes = [len(encode_envelope(r)) for r in sample_readings(100)]
    written: dict[tuple[str, int], int] = {(i, b): 0 for i in IMPLS for b in batches}
    try:
        floor_ms = fsync_floor(root / "fsync-floor")
        for repeat in range(args.repeats):
            for batch in batches:
                records = sample_readings(max(args.records, 300 * batch))
                runs = run_interleaved(root / f"{batch}-{repeat}", records, batch, args.max_seconds)
                for impl, run in runs.items():
                    rates[impl, batch].append(run.rate)
                    commit_ms[impl, batch].extend(run.commit_ms)
                    written[impl, batch] += run.records
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"# durable appends (sync=True), {args.repeats} repeats, fresh env each, records "
        f"{min(record_bytes)}-{max(record_bytes)} B encoded, {filesystem_of(root.parent)} at {root.parent}"
    )
    print(
        f"{'batch':>6}{'garrison rec/s':>16}{'raw lmdb rec/s':>16}{'garrison/raw':>14}"
        f"{'raw batched rec/s':>19}{'garrison/batched':>18}"
        f"{'commit p50 ms g / raw / batched':>33}{'commit p99 ms g / raw / batched':>33}"
    )
    results: dict[str, Any] = {}
    for batch in batches:
        g, r, rb = (statistics.median(rates[i, batch]) for i in IMPLS)
        # the sides ran interleaved, so each repeat is a pair: the median of the paired ratios
        paired = [a / b for a, b in zip(rates["garrison", batch], rates["raw_lmdb", batch], strict=True)]
        paired_b = [
            a / b for a, b in zip(rates["garrison", batch], rates["raw_lmdb_batched", batch], strict=True)
        ]
        ratio, ratio_b = statistics.median(paired), statistics.median(paired_b)
        p50 = [float(np.percentile(commit_ms[i, batch], 50)) for i in IMPLS]
        p99 = [float(np.percentile(commit_ms[i, batch], 99)) for i in IMPLS]
        print(
            f"{batch:>6}{g:>16,.0f}{r:>16,.0f}{ratio:>13.2f}x{rb:>19,.0f}{ratio_b:>17.2f}x"
            f"{' / '.join(f'{x:.3f}' for x in p50):>33}{' / '.join(f'{x:.3f}' for x in p99):>33}"
        )
        results[str(batch)] = {
            "records_written": {i: written[i, batch] for i in IMPLS},
            **{f"{i}_rec_s_median": round(statistics.median(rates[i, batch])) for i in IMPLS},
            **{f"{i}_rec_s_all": [round(x) for x in rates[i, batch]] for i in IMPLS},
            "ratio_garrison_over_raw": round(ratio, 3),
            "ratio_per_repeat": [round(x, 3) for x in paired],
            "ratio_garrison_over_raw_batched": round(ratio_b, 3),
            "commit_ms_p50": {i: round(x, 4) for i, x in zip(IMPLS, p50, strict=True)},
            "commit_ms_p99": {i: round(x, 4) for i, x in zip(IMPLS, p99, strict=True)},
        }
    print(
        "# rec/s: median over repeats; ratios: median of the per-repeat (paired) ratios. raw lmdb: one put per "
        "record (the target's baseline); raw batched: garrison's layout, one put per batch, no garrison code"
    )
    floor = {"p50": float(np.percentile(floor_ms, 50)), "p99": float(np.percentile(floor_ms, 99))}
    print(
        f"# disk floor in the same directory: write(150 B) + fsync p50 {floor['p50']:.3f} ms, "
        f"p99 {floor['p99']:.3f} ms (n={len(floor_ms)}); a durable LMDB commit makes 2 fsyncs (data, meta)"
    )
    print(
        "# records written per batch size (garrison / raw / raw batched, all repeats): "
        + ", ".join(f"{b}: " + " / ".join(str(written[i, b]) for i in IMPLS) for b in batches)
    )
    print(f"# load average at start {load:.2f}; wall time {time.monotonic() - began:.1f}s")
    print(
        json.dumps(
            {
                "bench": "eventlog_appends",
                "repeats": args.repeats,
                "record_bytes": [min(record_bytes), max(record_bytes)],
                "filesystem": filesystem_of(root.parent),
                "batches": results,
                "fsync_floor_ms": {k: round(v, 4) for k, v in floor.items()},
                "max_seconds": args.max_seconds,
                "load_avg_1m": round(load, 2),
                "lmdb_version": ".".join(map(str, lmdb.version())),
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
