"""Window features inside the ONNX graph vs in numpy: microseconds per window at one batch size.

``python -m bench.features_graph [--batch 256] [--seconds 2] [--rounds 10]``

Four ways to score the same ``--batch`` windows (simulated channels of the default scenario, rows without
missing readings, as almost every window is), all with the detector's session options (1 thread):

- ``bare_ort_classifier``: the classifier's ``InferenceSession.run`` on feature rows computed beforehand (the
  floor: what the model alone costs; issue 10's "bare onnxruntime" baseline).
- ``composed_run``: the windows model's ``run`` alone (on ``graph_feeds`` of the windows, made beforehand).
- ``predict_windows``: ``OnnxDetector.predict_windows``: ``graph_feeds`` (numpy: steps, sorts, transposed
  copies) + the composed run + the NaN check: what a caller pays.
- ``topk_in_graph``: the same graph preparing its input itself, with onnxruntime's TopK and Transpose (built
  in memory; needs the ``model`` extra): why the runtime prepares in numpy.
- ``python_features``: ``window_features`` (numpy) then the classifier's ``run``: the path before.

Each configuration runs ``--seconds`` of CPU time in total, as ``--rounds`` interleaved slices; the figure is
the median slice. CPU time of this thread, not wall time: the 2-core machine is shared with other work,
which stretches wall time by whatever it takes, and onnxruntime with one intra-op thread runs in the calling
thread, so the thread's CPU time is all the work of every configuration.
Prints one JSON object: µs per window for each, and each path's windows/s as a ratio of the bare classifier's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.features import sliding_windows, window_features
from models.features_graph import OUTPUT_NAME, WINDOWS_INPUT, compose, graph_feeds
from models.simulator import channel_values, default_scenario


def simulated_windows(n: int, seed: int = 7) -> np.ndarray:
    """``n`` complete windows from the default scenario's channels (leaks, glitches, quiet stretches)."""
    scenario = default_scenario(seed)
    steps = np.arange(2000)
    rows = [
        sliding_windows(channel_values(scenario, site.sensor, pollutant, steps))
        for site in scenario.sensors
        for pollutant in scenario.pollutants
    ]
    windows = np.concatenate(rows)
    windows = windows[np.isfinite(windows).all(axis=1)]
    picked = np.random.default_rng(seed).choice(len(windows), size=n, replace=len(windows) < n)
    return np.ascontiguousarray(windows[picked])


def time_slice(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Mean CPU seconds (this thread's) per call over at least ``seconds`` of calls."""
    calls, start = 0, time.thread_time()
    while True:
        for _ in range(10):
            fn()
        calls += 10
        now = time.thread_time()
        if now - start >= seconds:
            return (now - start) / calls, calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.features_graph", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU time per configuration")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    detector = load_detector(DEFAULT_MODEL_PATH)
    windows = simulated_windows(args.batch)
    features = window_features(windows)
    feeds = graph_feeds(windows)
    classifier, composed = detector._session, detector._windows_session
    in_name, out_name = detector._input, detector._output
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    topk = ort.InferenceSession(
        compose(DEFAULT_MODEL_PATH.read_bytes(), sort_in_graph=True), opts, providers=["CPUExecutionProvider"]
    )
    # The paths must agree before they are timed.
    expected = detector.predict(features)
    np.testing.assert_allclose(detector.predict_windows(windows), expected, rtol=0, atol=1e-6)
    (via_topk,) = topk.run([OUTPUT_NAME], {WINDOWS_INPUT: windows})
    np.testing.assert_allclose(via_topk, expected, rtol=0, atol=1e-6)
    paths: dict[str, Callable[[], object]] = {
        "bare_ort_classifier": lambda: classifier.run([out_name], {in_name: features}),
        "composed_run": lambda: composed.run([OUTPUT_NAME], feeds),
        "predict_windows": lambda: detector.predict_windows(windows),
        "topk_in_graph": lambda: topk.run([OUTPUT_NAME], {WINDOWS_INPUT: windows}),
        "python_features": lambda: classifier.run([out_name], {in_name: window_features(windows)}),
    }
    for fn in paths.values():  # warm-up
        for _ in range(5):
            fn()
    slices: dict[str, list[float]] = {name: [] for name in paths}
    calls = dict.fromkeys(paths, 0)
    for _ in range(args.rounds):
        for name, fn in paths.items():
            per_call, n = time_slice(fn, args.seconds / args.rounds)
            slices[name].append(per_call * 1e6 / args.batch)
            calls[name] += n
    us = {name: statistics.median(values) for name, values in slices.items()}
    result: dict[str, object] = {
        "batch": args.batch,
        "cpu_seconds_per_config": args.seconds,
        "rounds": args.rounds,
    }
    for name in paths:
        result[name] = {
            "us_per_window": round(us[name], 3),
            "best_slice_us": round(min(slices[name]), 3),
            "calls": calls[name],
        }
    result["vs_bare_ort"] = {
        name: round(us["bare_ort_classifier"] / value, 3)
        for name, value in us.items()
        if name != "bare_ort_classifier"
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
