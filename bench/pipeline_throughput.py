"""Readings/s through the InferenceActor at batch sizes 1/32/256, next to bare onnxruntime, in one run.

    python -m bench.pipeline_throughput [--steps S] [--batches 1,32,256] [--keep]

"Batch size" B means B windows per model call and per durable transaction. The actor's knob is
``batch_limit`` = readings per transaction; every channel emits a window every ``STEP`` of its readings, so
``batch_limit = B * STEP`` readings carry B windows on average once the buffers are full (the 20 channels of
the default scenario close their windows in the same simulated step, so one transaction holds 0..~3B).

Cases, per B:
- ``actor``: the real ``InferenceActor`` (ONNX model) on a real tree (the real ``Supervisor``,
  ``multiprocTCPBase``, loopback-only), alone in its node. ``readings`` is pre-filled in ONE durable append
  after the actor has started (the t0); t1 = the actor's saved offset reaches the last reading (polled from
  this process every ``POLL_S``). It does per reading what the product does: ``WindowBuffer.push``, per
  chunk ``window_features`` on the chunk's windows, ``detector.predict``, ``EpisodeTracker.update``, and one
  durable batch (offset + buffers + trackers + proposed incidents) per chunk.
- ``in_process``: the same loop (``bench.pipeline_throughput_core.process_chunk``) in this process, without
  the event log: the compute share of the actor's time.
- ``vectorised`` (``vect.``): the same in-process loop with the chunk's features computed in ONE
  ``window_features`` call instead of one call per window (what ``_process_batch`` could do).
- ``bare_ort``: ``InferenceSession.run`` (same session options as ``OnnxDetector``: 1 thread) on the same
  windows' precomputed feature rows, B rows per call.
windows/s = windows scored / elapsed; the ratio is actor windows/s over bare-onnxruntime rows/s at the same B.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from thespian.actors import ActorSystem

from actors.eventlog import open_event_log
from actors.sensor import reading_record
from actors.streams import PROPOSED_INCIDENTS, READINGS
from bench.raft_commit import durable_commit_probe, kill_session_leftovers, start_tree
from bench.restart_latency import BenchError, Mailbox, stderr_to
from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.episodes import EpisodeConfig
from models.features import STEP, WindowBuffer, window_features
from models.pipeline import DetectionPipeline
from models.simulator import default_scenario, generate
from supervisors.spec import Restart, SupervisorSpec, WorkerSpec
from supervisors.thespian_env import SYSTEM_BASE, free_loopback_port, prepare_environment

NODE = "bench"
POLL_S = 0.002
ACTOR_POLL_S = 0.01  # the actor's own idle poll (default 0.05 s): bounds the start-up slack in t0 -> t1
RUN_WAIT_S = 300.0
ORT_MIN_S = 0.5  # repeat the bare-onnxruntime pass until it took at least this long


def make_readings(steps: int, seed: int) -> list[dict[str, Any]]:
    """``steps`` simulated steps of the default scenario, as the sensor actor stores them."""
    now = time.time()
    return [reading_record(r, now) for r in generate(default_scenario(seed), n_steps=steps)]


def all_windows(readings: list[dict[str, Any]]) -> np.ndarray:
    """Every window ``WindowBuffer`` emits over ``readings``, in stream order, as ``[N, WINDOW]``."""
    buffers: dict[str, WindowBuffer] = {}
    out = []
    for r in readings:
        key = f"{r['sensor']}|{r['pollutant']}"
        buf = buffers.setdefault(key, WindowBuffer(r["sensor"], r["pollutant"]))
        window = buf.push(float(r["ts"]), float("nan") if r["value"] is None else float(r["value"]))
        if window is not None:
            out.append(window.array())
    return np.stack(out)


def run_actor(readings: list[dict[str, Any]], batch_limit: int, root_dir: Path) -> dict[str, Any]:
    """One fresh node (its own data dir and ActorSystem) with only an InferenceActor."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"actor-b{batch_limit}-", dir=root_dir))
    log_defs = prepare_environment(data_dir)
    spec = SupervisorSpec(
        id="bench",
        children=(
            WorkerSpec(
                id="inference",
                actor="actors.inference.InferenceActor",
                args={
                    "batch_limit": batch_limit,
                    "poll_interval": ACTOR_POLL_S,
                    "model": str(DEFAULT_MODEL_PATH),
                },
                restart=Restart.PERMANENT,
            ),
        ),
    )
    session = None
    with stderr_to(data_dir / "actors.jsonl"):
        asys = ActorSystem(SYSTEM_BASE, {"Admin Port": free_loopback_port()}, logDefs=log_defs)
        try:
            _, session = start_tree(asys, Mailbox(asys), spec, data_dir, NODE)
            log = open_event_log(data_dir / "eventlog")
            seqs = log.append(READINGS, readings)
            t0 = time.perf_counter()
            last = seqs[-1]
            deadline = time.monotonic() + RUN_WAIT_S
            while (log.get_value("inference/bench/inference") or {}).get("offset", 0) < last:
                if time.monotonic() > deadline:
                    raise BenchError(f"the actor did not reach offset {last} within {RUN_WAIT_S}s")
                time.sleep(POLL_S)
            elapsed = time.perf_counter() - t0
            proposals = log.last_seq(PROPOSED_INCIDENTS)
        finally:
            with contextlib.suppress(Exception):
                asys.shutdown()
            leftovers = kill_session_leftovers(session)
    events = [
        json.loads(line)
        for line in (data_dir / "actors.jsonl").read_text().splitlines()
        if line.startswith("{")
    ]
    degraded = any(e.get("event") == "model_degraded" for e in events)
    crashed = sum(e.get("event") == "child_crashed" for e in events)
    return {
        "elapsed_s": elapsed,
        "proposals": proposals,
        "model_degraded": degraded,
        "crashes": crashed,
        "leftovers_killed": len(leftovers),
    }


def run_in_process(readings: list[dict[str, Any]], batch_limit: int) -> dict[str, Any]:
    """The actor's per-chunk work (the same DetectionPipeline, state built per chunk) without the log."""
    core = DetectionPipeline(load_detector(DEFAULT_MODEL_PATH), EpisodeConfig())
    proposals = 0
    t0 = time.perf_counter()
    for lo in range(0, len(readings), batch_limit):
        proposals += len(core.process(readings[lo : lo + batch_limit]))
        core.state()
    return {"elapsed_s": time.perf_counter() - t0, "proposals": proposals, "windows": core.windows_scored}


def run_bare_ort(features: np.ndarray, batch: int) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as OnnxDetector: the node's 2 cores are shared by every actor
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(DEFAULT_MODEL_PATH), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    chunks = [features[lo : lo + batch] for lo in range(0, len(features), batch)]
    session.run(None, {name: chunks[0]})  # the first run allocates
    rows, passes = 0, 0
    t0 = time.perf_counter()
    while True:
        for chunk in chunks:
            session.run(None, {name: chunk})
        rows += len(features)
        passes += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= ORT_MIN_S:
            return {"elapsed_s": elapsed, "rows": rows, "passes": passes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--steps", type=int, default=360, help="simulated steps (x20 readings; default 360 = 1 h)"
    )
    parser.add_argument("--batches", default="1,32,256", help="windows per batch, comma-separated")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs (logs)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.steps < 60 or min(batches) < 1:
        parser.error("--steps must be >= 60 (one window) and batch sizes >= 1")
    if not DEFAULT_MODEL_PATH.is_file():
        print(f"{DEFAULT_MODEL_PATH} is missing: build it first with python -m models.build", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="garrison-bench-pipeline-"))
    load = os.getloadavg()[0]
    began = time.monotonic()
    readings = make_readings(args.steps, args.seed)
    windows = all_windows(readings)
    features = window_features(windows).astype(np.float32)
    n_readings, n_windows = len(readings), len(windows)
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    ok = False
    try:
        probe_before = durable_commit_probe(root)
        for b in batches:
            limit = b * STEP
            actor = run_actor(readings, limit, root)
            inproc = run_in_process(readings, limit)
            ort_run = run_bare_ort(features, b)
            ort_rows_s = ort_run["rows"] / ort_run["elapsed_s"]
            actor_windows_s = n_windows / actor["elapsed_s"]
            rows[str(b)] = {
                "batch_limit_readings": limit,
                "transactions": -(-n_readings // limit),
                "actor_readings_per_s": round(n_readings / actor["elapsed_s"], 1),
                "actor_windows_per_s": round(actor_windows_s, 1),
                "in_process_readings_per_s": round(n_readings / inproc["elapsed_s"], 1),
                "in_process_windows_per_s": round(n_windows / inproc["elapsed_s"], 1),
                "bare_ort_rows_per_s": round(ort_rows_s, 1),
                "actor_vs_bare_ort": round(actor_windows_s / ort_rows_s, 5),
                "in_process_vs_bare_ort": round(n_windows / inproc["elapsed_s"] / ort_rows_s, 4),
                "actor_vs_in_process": round(inproc["elapsed_s"] / actor["elapsed_s"], 4),
                "actor_elapsed_s": round(actor["elapsed_s"], 3),
            }
            if actor["proposals"] != inproc["proposals"] or actor["model_degraded"] or actor["crashes"]:
                notes.append(
                    f"B={b}: CHECK FAILED: actor proposed {actor['proposals']} incidents, in-process "
                    f"{inproc['proposals']}; model_degraded={actor['model_degraded']}; crashes={actor['crashes']}"
                )
            else:
                notes.append(
                    f"B={b}: actor and in-process both proposed {actor['proposals']} incidents; no crash"
                )
            if inproc["windows"] != n_windows:
                notes.append(f"B={b}: in-process scored {inproc['windows']} windows, expected {n_windows}")
            if actor["leftovers_killed"]:
                notes.append(f"B={b}: {actor['leftovers_killed']} node processes killed after shutdown")
        probe_after = durable_commit_probe(root)
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}; logs under {root}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"# pipeline throughput on {SYSTEM_BASE}: {n_readings} readings ({args.steps} steps x 20 channels), "
        f"{n_windows} windows (one per channel every STEP={STEP} readings after the first 60)"
    )
    print(
        f"{'B':>5}{'limit':>7}{'txns':>6}{'actor rd/s':>12}{'actor win/s':>13}{'inproc win/s':>14}"
        f"{'ORT rows/s':>13}{'actor/ORT':>11}{'inproc/ORT':>12}{'actor/inproc':>14}"
    )
    for b, r in rows.items():
        print(
            f"{b:>5}{r['batch_limit_readings']:>7}{r['transactions']:>6}{r['actor_readings_per_s']:>12,.0f}"
            f"{r['actor_windows_per_s']:>13,.0f}{r['in_process_windows_per_s']:>14,.0f}"
            f"{r['bare_ort_rows_per_s']:>13,.0f}{r['actor_vs_bare_ort']:>11.4f}"
            f"{r['in_process_vs_bare_ort']:>12.4f}{r['actor_vs_in_process']:>14.3f}"
        )
    for note in notes:
        print(f"# {note}")
    print(f"# durable 1-record LMDB commit on this disk before / after: {probe_before} / {probe_after}")
    print(
        f"# load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; wall {time.monotonic() - began:.1f}s"
    )
    result = {
        "bench": "pipeline_throughput",
        "system_base": SYSTEM_BASE,
        "readings": n_readings,
        "windows": n_windows,
        "step": STEP,
        "batches": rows,
        "durable_commit_probe_before_after": [probe_before, probe_after],
        "load_avg_1m": round(load, 2),
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
