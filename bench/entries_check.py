"""Microseconds per ``open_entry`` on v2 entries (batches of realistic incidents), cold and warm memo.

    python -m bench.entries_check [--batch 100] [--batches 20] [--repeat 5] [--legacy] [--profile]

- ``warm``: the batch's signature and path hashes are in the memos (a follower's 2nd..Bth entry of a
  batch): decoding, the Merkle path and the schema check only.
- ``cold_path``: signature memo warm, path memo emptied before each batch (a follower's first pass).
- ``cold``: both memos emptied before each batch: one Ed25519 verify per batch, amortised over B entries
  (a follower applying a batch it did not sign).
- ``leader``: both memos emptied, the batch signed (not timed), then opened (the leader applying its own
  proposals: signing seeds the memo of entries it signed, and only the body and the schema are checked).

Every case but ``leader`` empties the memo of entries this process signed before each batch: a follower
did not sign them.

``--legacy`` also times the frozen pre-issue-9 copy (``tests/unit/raft/legacy_entries.py``) in the same run,
alternating, so both see the same load. The figures are the best of ``--repeat`` runs (the machine is
shared), with the load average. ``--profile`` prints a cProfile of the warm case.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
import types
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.raft import entries
from bench.raft_commit import incident

NODE = "gw-1"


def _incidents(batch: int, batches: int) -> list[list[dict[str, Any]]]:
    return [[incident(f"{b:04d}-{i:05d}", i) for i in range(batch)] for b in range(batches)]


def _time(
    module: types.ModuleType,
    data: list[list[bytes]],
    trusted: dict[str, Any],
    case: str,
    key: Ed25519PrivateKey,
    incidents: list[list[dict[str, Any]]],
) -> float:
    """Microseconds per entry for one pass over all batches."""
    open_entry: Callable[[object, dict[str, Any]], tuple[Any, str]] = module.open_entry
    spent = 0.0
    count = 0
    for b, batch in enumerate(data):
        if case in ("cold", "leader"):
            module._VERIFIED.clear()
        if case in ("cold", "cold_path", "leader"):
            module._PATHS.clear()
        if case == "leader":
            batch = module.signed_batch(NODE, incidents[b], key)
        else:  # a follower's memo holds no entry it signed (the legacy copy has no such memo)
            getattr(module, "_SIGNED", {}).clear()
        t0 = time.perf_counter()
        for entry in batch:
            opened, why = open_entry(entry, trusted)
            if opened is None:
                raise SystemExit(f"bench entry rejected: {why}")
        spent += time.perf_counter() - t0
        count += len(batch)
    return spent / count * 1e6


def _warm(module: types.ModuleType, data: list[list[bytes]], trusted: dict[str, Any]) -> None:
    for batch in data:
        for entry in batch:
            module.open_entry(entry, trusted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--legacy", action="store_true", help="also time the frozen pre-issue-9 copy")
    parser.add_argument("--profile", action="store_true", help="cProfile the warm case")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    trusted = {NODE: key.public_key()}
    incidents = _incidents(args.batch, args.batches)
    data = [entries.signed_batch(NODE, batch, key) for batch in incidents]
    modules: dict[str, types.ModuleType] = {"current": entries}
    if args.legacy:
        from tests.unit.raft import legacy_entries

        modules["legacy"] = legacy_entries
    if args.profile:
        for name, module in modules.items():
            _warm(module, data, trusted)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(5):
                _warm(module, data, trusted)
            profiler.disable()
            print(f"--- profile: {name}, warm")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)
    results: dict[str, dict[str, float]] = {name: {} for name in modules}
    load = os.getloadavg()[0]
    for case in ("warm", "cold_path", "cold", "leader"):
        best: dict[str, float] = {name: float("inf") for name in modules}
        for _ in range(args.repeat):
            for name, module in modules.items():  # alternate: both see the same load
                _warm(module, data, trusted)
                best[name] = min(best[name], _time(module, data, trusted, case, key, incidents))
        for name in modules:
            results[name][case] = round(best[name], 2)
    for name, cases in results.items():
        line = "  ".join(f"{case} {us:6.2f} us/entry" for case, us in cases.items())
        print(f"{name:8s} {line}")
    summary = {"batch": args.batch, "entries": args.batch * args.batches, "load_1m": load, **results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
