"""Windows/s of the inference path at batch sizes 1/32/256, each next to bare onnxruntime, from ONE run.

    python -m bench.pipeline_throughput [--steps S] [--batches 1,32,256] [--reps 3] [--min-seconds 2] [--keep]

"Batch size" B means B windows per model call; in a backlog the actor commits 4 batches per durable
transaction (group commit, see ``actors/pipeline/inference.py``). The actor's knob is
``batch_limit`` = readings per transaction; every channel emits a window every ``STEP`` of its readings, so
``batch_limit = B * STEP`` readings carry B windows on average once the buffers are full (the 20 channels of
the default scenario close their windows in the same simulated step, so one chunk holds 0..~3B).

Per B, ``--reps`` repetitions of three measurements taken back to back (the machine is shared and noisy:
each repetition's ratios come from measurements seconds apart; the table quotes medians):
- ``actor``: the real ``InferenceActor`` (ONNX model) on a real tree (the real ``Supervisor``,
  ``multiprocTCPBase``, loopback-only), alone in a fresh node. ``readings`` is pre-filled in ONE durable
  append (of block records) after the actor has started (t0); the actor's saved offset is polled from this process every
  ``POLL_S`` until ``--min-seconds`` have passed (or it has read everything): windows/s = windows closed by
  the readings up to that offset / elapsed. Its proposed incidents are then checked against the in-process
  pipeline's on the same readings.
- ``in_process``: the same ``DetectionPipeline`` in this process, fed the same chunks of blocks (decoded
  from the records as the log hands them back) and asked for its ``state()`` after each, as the actor
  persists it, without the event log; as many passes over the readings (a fresh pipeline each) as fit in
  ``--min-seconds``.
- ``bare_ort``: ``InferenceSession.run`` of the windows model (features inside its graph: what
  ``predict_windows`` runs; same session options as ``OnnxDetector``: 1 thread) on exactly the window
  batches the pipeline handed its detector for this B (captured in a first pass, prepared as the detector
  prepares them), repeated for ``--min-seconds``; and ``bare_ort_classifier``: the classifier alone on the
  numpy features of the same windows (the model before the features moved into the graph).
Each ratio is windows/s over bare-onnxruntime windows/s of the same repetition.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from thespian.actors import ActorSystem

from actors.eventlog import open_event_log
from actors.pipeline.sensor import SensorArgs, reading_record
from actors.streams import PROPOSED_INCIDENTS, READINGS
from bench.raft_commit import durable_commit_probe, kill_session_leftovers, start_tree
from bench.restart_latency import BenchError, Mailbox, stderr_to
from models.detector import DEFAULT_MODEL_PATH, INPUT_NAME, load_detector
from models.episodes import EpisodeConfig
from models.features import STEP, WINDOW, window_features
from models.features_graph import graph_feeds
from models.pipeline import DetectionPipeline
from models.readings import ReadingColumns
from models.simulator import default_scenario, generate
from supervisors.spec import Restart, SupervisorSpec, WorkerSpec
from supervisors.thespian_env import SYSTEM_BASE, free_loopback_port, prepare_environment

NODE = "bench"
POLL_S = 0.02  # each poll decodes the actor's saved state (~20 KB): every 2 ms it took CPU from the actor
ACTOR_POLL_S = 0.01  # the actor's own idle poll (default 0.05 s): bounds the start-up slack in t0 -> t1
RUN_WAIT_S = 300.0
OFFSET_KEY = "inference/bench/inference"


def block_readings(seed: int) -> int:
    """Readings per ``readings`` record as the sensor actor writes them with its default args: every
    channel's readings of the steps of one tick, as one block."""
    args, scenario = SensorArgs(), default_scenario(seed)
    steps = max(1, round(args.speedup * args.tick / scenario.interval_s))
    return steps * len(scenario.sensors) * len(scenario.pollutants)


def make_blocks(readings: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``readings`` as block records of ``size`` readings, as the event log hands them back (msgpack out
    and in), for the in-process measurement."""
    return [
        msgspec.msgpack.decode(
            msgspec.msgpack.encode(ReadingColumns.from_dicts(readings[i : i + size]).to_record())
        )
        for i in range(0, len(readings), size)
    ]


def make_readings(steps: int, seed: int) -> list[dict[str, Any]]:
    """``steps`` simulated steps of the default scenario, as the sensor actor stores them."""
    now = time.time()
    return [reading_record(r, now) for r in generate(default_scenario(seed), n_steps=steps)]


def windows_through(readings: list[dict[str, Any]]) -> np.ndarray:
    """``[n+1]``: how many windows the first ``i`` readings close (every ``STEP``-th reading of a channel
    from its ``WINDOW``-th on; the simulator's ts only go forward)."""
    seen: dict[tuple[str, str], int] = {}
    closes = np.zeros(len(readings) + 1, dtype=np.int64)
    for i, r in enumerate(readings, start=1):
        key = (r["sensor"], r["pollutant"])
        k = seen[key] = seen.get(key, 0) + 1
        closes[i] = k >= WINDOW and (k - WINDOW) % STEP == 0
    return np.cumsum(closes)


class _Recorder:
    """A detector that keeps every window batch it is asked to score (for the bare-onnxruntime cases)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.version, self.batches = inner, inner.version, []

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(windows, dtype=np.float64))
        return self.inner.predict_windows(windows)


def chunked_incidents(readings: list[dict[str, Any]], batch_limit: int, detector: Any) -> list[str]:
    """Incident ids the pipeline proposes over ``readings`` fed in the actor's chunks."""
    pipeline = DetectionPipeline(detector, EpisodeConfig())
    ids: list[str] = []
    for lo in range(0, len(readings), batch_limit):
        ids += [s.incident_id for s, _ in pipeline.process(readings[lo : lo + batch_limit])]
    return ids


def run_actor(
    readings: list[dict[str, Any]], block: int, batch_limit: int, root_dir: Path, min_seconds: float
) -> dict[str, Any]:
    """One fresh node (its own data dir and ActorSystem) with only an InferenceActor."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"actor-b{batch_limit}-", dir=root_dir))
    log_defs = prepare_environment(data_dir)
    spec = SupervisorSpec(
        id="bench",
        children=(
            WorkerSpec(
                id="inference",
                actor="actors.pipeline.inference.InferenceActor",
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
            seqs = log.append(
                READINGS,
                [
                    ReadingColumns.from_dicts(readings[i : i + block]).to_record()
                    for i in range(0, len(readings), block)
                ],
            )
            t0 = time.perf_counter()
            first, last = seqs[0], seqs[-1]
            deadline = time.monotonic() + RUN_WAIT_S
            while True:
                offset = (log.get_value(OFFSET_KEY) or {}).get("offset", 0)
                elapsed = time.perf_counter() - t0
                if offset >= last or (elapsed >= min_seconds and offset >= first):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"the actor did not reach offset {last} within {RUN_WAIT_S}s")
                time.sleep(POLL_S)
        finally:
            with contextlib.suppress(Exception):
                asys.shutdown()
            leftovers = kill_session_leftovers(session)
    # the actor is stopped: its offset and its proposals are one consistent picture now
    final = min(len(readings), ((log.get_value(OFFSET_KEY) or {}).get("offset", 0) - first + 1) * block)
    proposed = [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)]
    events = [
        json.loads(line)
        for line in (data_dir / "actors.jsonl").read_text().splitlines()
        if line.startswith("{")
    ]
    degraded = any(e.get("event") == "model_degraded" for e in events)
    crashed = sum(e.get("event") == "child_crashed" for e in events)
    return {
        "elapsed_s": elapsed,
        "readings": min(len(readings), (offset - first + 1) * block),
        "readings_at_stop": final,
        "proposed": proposed,
        "model_degraded": degraded,
        "crashes": crashed,
        "leftovers_killed": len(leftovers),
    }


def run_in_process(blocks: list[dict[str, Any]], per_chunk: int, detector: Any, min_seconds: float) -> float:
    """Windows/s of the actor's per-chunk work without the log: ``per_chunk`` block records (as the log
    hands them back) decoded into one set of columns, the same DetectionPipeline, its state built per
    chunk; passes over ``blocks`` (a fresh pipeline each) until ``min_seconds`` have passed."""
    windows = 0
    t0 = time.perf_counter()
    while True:
        core = DetectionPipeline(detector, EpisodeConfig())
        for lo in range(0, len(blocks), per_chunk):
            core.process(ReadingColumns.from_records(blocks[lo : lo + per_chunk]))
            core.state()
            if time.perf_counter() - t0 >= min_seconds:
                return (windows + core.windows_scored) / (time.perf_counter() - t0)
        windows += core.windows_scored


def ort_inputs(detector: Any, batches: list[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The exact ``session.run`` feeds of both models for the pipeline's window batches (complete rows:
    the few windows with dropouts take the classifier path in both cases):
    - ``windows_model``: the model with the features in its graph, as ``predict_windows`` runs it;
    - ``classifier``: the classifier alone on the numpy features (the model before the features moved into
      the graph: issue 10's original baseline)."""
    windows_feeds, classifier_feeds = [], []
    for batch in batches:
        complete = batch[np.isfinite(batch).all(axis=1)]
        if not len(complete):
            continue
        windows_feeds.append(graph_feeds(complete))
        classifier_feeds.append({INPUT_NAME: window_features(complete).astype(np.float32)})
    return {"windows_model": windows_feeds, "classifier": classifier_feeds}


def ort_sessions(detector: Any) -> dict[str, Any]:
    """Fresh sessions of both model files with ``OnnxDetector``'s options (1 thread: the node's 2 cores
    are shared by every actor)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1

    def session(path: Path) -> Any:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    return {"windows_model": session(detector.windows_model), "classifier": session(DEFAULT_MODEL_PATH)}


def run_bare_ort(session: Any, feeds: list[dict[str, np.ndarray]], min_seconds: float) -> float:
    """Rows/s of ``session.run`` over ``feeds`` (the pipeline's own batches), repeated for
    ``min_seconds``."""
    session.run(None, feeds[0])  # the first run allocates
    rows, per_pass = 0, sum(len(next(iter(f.values()))) for f in feeds)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        for feed in feeds:
            session.run(None, feed)
        rows += per_pass
    return rows / (time.perf_counter() - t0)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline_throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--steps", type=int, default=90000, help="simulated steps (x20 readings; default 90000 = 10 days)"
    )
    parser.add_argument("--batches", default="1,32,256", help="windows per batch, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per batch size (medians quoted)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="of work per measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs (logs)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.steps < 60 or min(batches) < 1 or args.reps < 1:
        parser.error("--steps must be >= 60 (one window), batch sizes and --reps >= 1")
    if not DEFAULT_MODEL_PATH.is_file():
        print(f"{DEFAULT_MODEL_PATH} is missing: build it first with python -m models.build", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="garrison-bench-pipeline-"))
    load_start = os.getloadavg()
    began = time.monotonic()
    readings = make_readings(args.steps, args.seed)
    block = block_readings(args.seed)
    blocks = make_blocks(readings, block)
    through = windows_through(readings)
    detector = load_detector(DEFAULT_MODEL_PATH)
    sessions = ort_sessions(detector)
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    ok = False
    try:
        probe_before = durable_commit_probe(root)
        for b in batches:
            limit = b * STEP
            per_chunk = max(1, round(limit / block))  # blocks per batch, as the actor takes them
            recorder = _Recorder(detector)
            chunked_incidents(
                readings, per_chunk * block, recorder
            )  # the batches the pipeline scores for this B
            feeds = ort_inputs(detector, recorder.batches)
            reps: list[dict[str, float]] = []
            for rep in range(args.reps):
                actor = run_actor(readings, block, limit, root, args.min_seconds)
                actor_w = float(through[actor["readings"]]) / actor["elapsed_s"]
                inproc_w = run_in_process(blocks, per_chunk, detector, args.min_seconds)
                ort_w = run_bare_ort(sessions["windows_model"], feeds["windows_model"], args.min_seconds)
                cls_w = run_bare_ort(sessions["classifier"], feeds["classifier"], args.min_seconds)
                reps.append(
                    {
                        "actor": actor_w,
                        "in_process": inproc_w,
                        "bare_ort": ort_w,
                        "bare_ort_classifier": cls_w,
                        "actor_vs_ort": actor_w / ort_w,
                        "in_process_vs_ort": inproc_w / ort_w,
                        "actor_vs_classifier_ort": actor_w / cls_w,
                        "actor_vs_in_process": actor_w / inproc_w,
                        "actor_s": actor["elapsed_s"],
                    }
                )
                expected = chunked_incidents(
                    readings[: actor["readings_at_stop"]], per_chunk * block, detector
                )
                if actor["proposed"] != expected or actor["model_degraded"] or actor["crashes"]:
                    notes.append(
                        f"B={b} rep {rep}: CHECK FAILED: actor proposed {len(actor['proposed'])} incidents, "
                        f"in-process {len(expected)} on the same {actor['readings_at_stop']} readings; "
                        f"model_degraded={actor['model_degraded']}; crashes={actor['crashes']}"
                    )
                else:
                    notes.append(
                        f"B={b} rep {rep}: actor ran {actor['elapsed_s']:.1f}s over {actor['readings']} readings; "
                        f"its {len(expected)} incidents = the in-process pipeline's on the same readings"
                    )
                if actor["readings"] == len(readings) and actor["elapsed_s"] < args.min_seconds:
                    notes.append(
                        f"B={b} rep {rep}: the actor read everything in under --min-seconds: raise --steps"
                    )
                if actor["leftovers_killed"]:
                    notes.append(
                        f"B={b} rep {rep}: {actor['leftovers_killed']} node processes killed after shutdown"
                    )
            rows[str(b)] = {
                "batch_limit_readings": limit,
                "model_calls_per_pass": len(recorder.batches),
                **{f"{k}_median": round(_median([r[k] for r in reps]), 4) for k in reps[0]},
                "reps": [{k: round(v, 4) for k, v in r.items()} for r in reps],
            }
        probe_after = durable_commit_probe(root)
        ok = True
    except BenchError as exc:
        print(f"benchmark failed: {exc}; logs under {root}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    load_end = os.getloadavg()
    print(
        f"# inference throughput on {SYSTEM_BASE}: {len(readings)} readings ({args.steps} steps x 20 channels, "
        f"{len(blocks)} block records of {block} as the sensor actor writes them), "
        f"{int(through[-1])} windows; medians of {args.reps} repetitions, >= {args.min_seconds:g}s of work each"
    )
    print(
        f"{'B':>5}{'limit':>7}{'actor win/s':>13}{'inproc win/s':>14}{'bare ORT win/s':>16}"
        f"{'actor/ORT':>11}{'inproc/ORT':>12}{'actor/inproc':>14}{'classifier ORT':>16}{'actor/clsORT':>14}"
    )
    for b, r in rows.items():
        print(
            f"{b:>5}{r['batch_limit_readings']:>7}{r['actor_median']:>13,.0f}{r['in_process_median']:>14,.0f}"
            f"{r['bare_ort_median']:>16,.0f}{r['actor_vs_ort_median']:>11.4f}"
            f"{r['in_process_vs_ort_median']:>12.4f}{r['actor_vs_in_process_median']:>14.3f}"
            f"{r['bare_ort_classifier_median']:>16,.0f}{r['actor_vs_classifier_ort_median']:>14.4f}"
        )
    print(
        "# bare ORT = the model as the pipeline runs it (window features inside its graph) on the pipeline's "
        "own batches; classifier ORT = the classifier alone on features computed beforehand (the model "
        "before the features moved into the graph)"
    )
    for note in notes:
        print(f"# {note}")
    print(f"# durable 1-record LMDB commit on this disk before / after: {probe_before} / {probe_after}")
    print(
        f"# load average (1/5/15 min) at start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}; wall {time.monotonic() - began:.1f}s"
    )
    result = {
        "bench": "pipeline_throughput",
        "system_base": SYSTEM_BASE,
        "readings": len(readings),
        "windows": int(through[-1]),
        "step": STEP,
        "reps": args.reps,
        "min_seconds": args.min_seconds,
        "batches": rows,
        "durable_commit_probe_before_after": [probe_before, probe_after],
        "load_avg_1m_start_end": [round(load_start[0], 2), round(load_end[0], 2)],
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
