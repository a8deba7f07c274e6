"""Detection latency on a real node: a reading's arrival -> its incident written by the file dispatcher.

    python -m bench.detection_latency [--seeds 7,8,9] [--speedup 600] [--sim-hours 3.5] [--keep]

For each seed, one real node (``python -m supervisors.cli run TOPOLOGY --log-format json``) runs the product
pipeline: ``SimulatedSensorActor`` (default scenario: a CO leak at minute 20 that reaches S1-S4, an NO2 leak
at 3 h; ``--sim-hours`` of simulated time at ``--speedup``) -> ``InferenceActor`` (ONNX model) -> a one-member
``RaftReplicaActor`` incident log -> ``DispatcherActor`` with one file sink. The benchmark polls the sink file
every ``POLL_S`` and records the wall time each JSON line appears. Latency per incident = that time minus the
``ingested_at`` the sensor actor stored in the reading that closed the detecting window (the inference actor
copies it into the incident). The node's log gives the stages on the same clock: ingested -> ``detection``
(inference committed the proposal) -> ``incident_committed`` (the replica applied it) -> line seen.

The simulated clock runs ``speedup`` times faster than the wall clock, but every latency here is wall time.
``ingested_at`` is taken when the sensor actor's tick starts building its batch (before the durable append).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.raft_commit import committed_ids, durable_commit_probe, kill_session_leftovers
from bench.restart_latency import read_log_events, summarize
from models.simulator import DEFAULT_INTERVAL_S

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.002
DRAIN_S = 5.0  # after the last simulated step, wait this long for in-flight incidents
START_WAIT_S = 60.0
STAGES = ("ingested_to_detection", "detection_to_committed", "committed_to_written")


def topology(data_dir: Path, sink: Path, seed: int, speedup: float, max_steps: int) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "name": "bench-edge",
                "data_dir": str(data_dir),
                "tree": {
                    "id": "root",
                    "strategy": "one_for_one",
                    "intensity": 5,
                    "period": 30,
                    "children": [
                        {
                            "id": "sensors",
                            "actor": "actors.pipeline.sensor.SimulatedSensorActor",
                            "args": {"seed": seed, "speedup": speedup, "max_steps": max_steps},
                        },
                        {
                            "id": "pipeline",
                            "strategy": "rest_for_one",
                            "intensity": 5,
                            "period": 30,
                            "children": [
                                {"id": "inference", "actor": "actors.pipeline.inference.InferenceActor"},
                                {
                                    "id": "incident-log",
                                    "actor": "actors.raft.replica.RaftReplicaActor",
                                    "args": {"publish": True},
                                },
                                {
                                    "id": "dispatch",
                                    "actor": "actors.dispatch.actor.DispatcherActor",
                                    "args": {"sinks": [{"kind": "file", "path": str(sink)}]},
                                },
                            ],
                        },
                    ],
                },
            }
        ]
    }


class SinkWatcher:
    """Tails the file sink: the wall time each complete line appeared (to within ``POLL_S``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""
        self.lines: list[tuple[float, dict[str, Any]]] = []

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        now = time.time()
        self.pos += len(chunk)
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        for line in complete:
            if line.strip():
                self.lines.append((now, json.loads(line)))


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()


def run_seed(seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    run_dir = root / f"seed-{seed}"
    run_dir.mkdir()
    sink = run_dir / "incidents.jsonl"
    max_steps = int(args.sim_hours * 3600 / DEFAULT_INTERVAL_S)
    wall_needed = max_steps * DEFAULT_INTERVAL_S / args.speedup
    topo_path = run_dir / "topology.yaml"
    topo_path.write_text(yaml.safe_dump(topology(run_dir / "data", sink, seed, args.speedup, max_steps)))
    log_path = run_dir / "node.jsonl"
    cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topo_path), "--log-format", "json"]
    cmd += ["--duration", str(wall_needed + START_WAIT_S + DRAIN_S + 30)]
    watcher = SinkWatcher(sink)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            started = time.monotonic()
            last_growth = time.monotonic()
            done_steps_at: float | None = None
            while proc.poll() is None:
                before = len(watcher.lines)
                watcher.poll()
                if len(watcher.lines) != before:
                    last_growth = time.monotonic()
                if done_steps_at is None and _sensor_done(run_dir / "data", max_steps):
                    done_steps_at = time.monotonic()
                if done_steps_at is not None and time.monotonic() - max(done_steps_at, last_growth) > DRAIN_S:
                    break
                if time.monotonic() - started > wall_needed + START_WAIT_S + DRAIN_S + 20:
                    break
                time.sleep(POLL_S)
            produce_wall = None if done_steps_at is None else done_steps_at - started
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    watcher.poll()
    events = read_log_events(log_path)
    node_started = [e for e in events if e.get("event") == "node_started"]
    session = int(node_started[0]["session"]) if node_started and node_started[0].get("session") else None
    leftovers = kill_session_leftovers(session)
    detected = {e["incident_id"]: _ts(e) for e in events if e.get("event") == "detection"}
    committed = {
        iid: _ts(e) for e in events if e.get("event") == "incident_committed" for iid in committed_ids(e)
    }
    samples: list[dict[str, Any]] = []
    for seen, line in watcher.lines:
        inc = line["incident"]
        ingested = inc.get("payload", {}).get("ingested_at")
        if ingested is None:
            continue
        iid = inc["incident_id"]
        sample = {"incident_id": iid, "total_ms": (seen - ingested) * 1e3}
        if iid in detected and iid in committed:
            sample["ingested_to_detection"] = (detected[iid] - ingested) * 1e3
            sample["detection_to_committed"] = (committed[iid] - detected[iid]) * 1e3
            sample["committed_to_written"] = (seen - committed[iid]) * 1e3
        samples.append(sample)
    return {
        "seed": seed,
        "samples": samples,
        "lines": len(watcher.lines),
        "exit_code": code,
        "crashes": sum(e.get("event") in ("child_crashed", "child_lost") for e in events),
        "degraded": any(e.get("event") == "model_degraded" for e in events),
        "produce_wall_s": produce_wall,
        "expected_produce_wall_s": wall_needed,
        "leftovers_killed": len(leftovers),
    }


def _sensor_done(data_dir: Path, max_steps: int) -> bool:
    """Whether the sensor actor has produced every step: its saved ``next_step`` in the node's event log
    (only read from this process; LMDB arbitrates between processes)."""
    from actors.eventlog import open_event_log

    if not (data_dir / "eventlog").exists():
        return False
    with contextlib.suppress(Exception):
        saved = open_event_log(data_dir / "eventlog").get_value("sensor/root/sensors") or {}
        return int(saved.get("next_step", 0)) >= max_steps
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detection_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seeds", default="7,8,9", help="scenario seeds, one node run each (default 7,8,9)")
    parser.add_argument("--speedup", type=float, default=600.0, help="simulated s per wall s (default 600)")
    parser.add_argument("--sim-hours", type=float, default=3.5, help="simulated hours per run (default 3.5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs (logs)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    root = Path(tempfile.mkdtemp(prefix="garrison-bench-detect-"))
    load = os.getloadavg()[0]
    began = time.monotonic()
    ok = False
    try:
        probe_before = durable_commit_probe(root)
        runs = [run_seed(seed, args, root) for seed in seeds]
        probe_after = durable_commit_probe(root)
        ok = all(r["samples"] for r in runs)
    finally:
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    samples = [s for r in runs for s in r["samples"]]
    if not samples:
        print(f"no incident reached the file sink; logs under {root}", file=sys.stderr)
        return 1
    stats = {"total": summarize([s["total_ms"] for s in samples])}
    for stage in STAGES:
        values = [s[stage] for s in samples if stage in s]
        if values:
            stats[stage] = summarize(values)
    print(
        f"# detection latency: {len(samples)} incidents over seeds {seeds}; speedup {args.speedup:g}x, "
        f"{args.sim_hours:g} simulated h per seed; reading ingested_at -> line in the file sink (wall clock)"
    )
    print(f"{'span':<28}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}{'n':>5}")
    for name, s in stats.items():
        print(
            f"{name:<28}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['mean_ms']:>9.1f}{s['max_ms']:>9.1f}{s['n']:>5}"
        )
    for r in runs:
        per = [s["total_ms"] for s in r["samples"]]
        p50 = f"{float(np.percentile(per, 50)):.1f}" if per else "-"
        print(
            f"# seed {r['seed']}: {r['lines']} lines, p50 {p50} ms; exit {r['exit_code']}; crashes/lost "
            f"{r['crashes']}; model degraded {r['degraded']}; all steps produced "
            f"{r['produce_wall_s'] if r['produce_wall_s'] is None else round(r['produce_wall_s'], 1)} s "
            f"after launch (simulated time needs {r['expected_produce_wall_s']:.1f} s); leftovers killed {r['leftovers_killed']}"
        )
    print(f"# durable 1-record LMDB commit on this disk before / after: {probe_before} / {probe_after}")
    print(
        f"# load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; wall {time.monotonic() - began:.1f}s"
    )
    result = {
        "bench": "detection_latency",
        "seeds": seeds,
        "speedup": args.speedup,
        "sim_hours": args.sim_hours,
        "incidents": len(samples),
        "stats": stats,
        "durable_commit_probe_before_after": [probe_before, probe_after],
        "load_avg_1m": round(load, 2),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
