"""Build the gas-leak detector: simulate labelled data, train, export ONNX, evaluate, write the card.

``python -m models.build [--seed 7] [--out models/gas_detector.onnx]``

Also writes the windows model next to the classifier (``gas_detector_windows.onnx``: the same classifier with
the features computed inside the graph, ``models.features_graph``); ``python -m models.features_graph``
rebuilds that one alone from a committed classifier, without retraining.

Training data comes only from the simulator (``models.simulator.random_scenario`` with an rng
seeded from ``--seed``); the metrics in the model card come from ``models.evaluate`` on scenarios
drawn from a different seed stream, so they are held out. Needs the ``model`` extra
(scikit-learn, skl2onnx, onnx, river); the runtime needs only onnxruntime and numpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.detector import DEFAULT_MODEL_PATH, INPUT_NAME, OUTPUT_NAME, HeuristicDetector, load_detector
from models.episodes import DEFAULT_THRESHOLD, EpisodeConfig
from models.evaluate import DEFAULT_EVAL_SEED, EvalReport, EvalSpec, evaluate, meets_quality_bar
from models.features import (
    FEATURE_NAMES,
    HEAD,
    N_FEATURES,
    STEP,
    WINDOW,
    sliding_windows,
    window_end_indices,
    window_features,
)
from models.features_graph import update_card, windows_model_path, write_windows_model
from models.simulator import LEAK_FALL_S, Scenario, channel_values, leak_exposures, random_scenario

if TYPE_CHECKING:  # scikit-learn is a build-time (``model`` extra) dependency only
    from sklearn.ensemble import GradientBoostingClassifier

MODEL_VERSION = "1.0.0"
DEFAULT_SEED = 7
IR_VERSION = 8
OPSET = {"": 17, "ai.onnx.ml": 3}
N_TREES = 100
TREE_DEPTH = 4
EASY_NEGATIVE_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class TrainSpec:
    scenarios: int = 40
    hours: float = 6.0
    n_sensors: int = 6
    leaks_per_hour: float = 2.0
    negatives_per_sensor_hour: float = 0.7
    clean_scenarios: int = 4


@dataclass(frozen=True, slots=True)
class BuildReport:
    model_path: Path
    card_path: Path
    version: str
    seed: int
    n_windows: int
    n_positive: int
    model_bytes: int
    model_sha256: str
    opsets: dict[str, int]
    metrics: EvalReport
    heuristic_metrics: EvalReport
    meets_quality_bar: bool


# A window is a positive example while the leak's onset is inside it: at least a minute of the
# plume is in the tail and the head is still mostly clean air. Later windows of the same leak
# look like a steady (if puffy) level and are left out of training rather than mislabelled.
_ONSET_MIN_S = 60.0
_ONSET_MAX_S = (WINDOW - HEAD // 2) * 10.0
_FALL_S = 2 * LEAK_FALL_S


def label_windows(scenario: Scenario, sensor: str, pollutant: str, end_idx: np.ndarray) -> np.ndarray:
    """Per window: 1 = leak onset, 0 = no leak, -1 = leak in view but not an onset (unused)."""
    dt = scenario.interval_s
    end_t = end_idx * dt
    labels = np.zeros(len(end_idx), dtype=np.int8)
    for exp in leak_exposures(scenario):
        if exp.sensor != sensor or exp.pollutant != pollutant:
            continue
        # Plume in the tail but its onset out of view (or too fresh to see): unlabelled. Once
        # the plume has gone from the tail, the decay is a plain negative.
        in_tail = (end_t >= exp.arrival_ts) & (end_t - (WINDOW - HEAD) * dt <= exp.end_ts + _FALL_S)
        labels[in_tail & (labels == 0)] = -1
        since = end_t - exp.arrival_ts
        onset = (since >= _ONSET_MIN_S) & (since <= _ONSET_MAX_S) & (end_t <= exp.end_ts + 30.0)
        if not exp.masked:  # a stuck or silent sensor cannot show the onset
            labels[onset] = 1
    return labels


def training_data(seed: int, spec: TrainSpec) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(f"train-{seed}")
    scenarios = [
        random_scenario(
            rng,
            hours=spec.hours,
            n_sensors=spec.n_sensors,
            leaks_per_hour=spec.leaks_per_hour,
            negatives_per_sensor_hour=spec.negatives_per_sensor_hour,
        )
        for _ in range(spec.scenarios)
    ] + [
        random_scenario(
            rng, hours=spec.hours, n_sensors=spec.n_sensors, leaks_per_hour=0.0, negatives_per_sensor_hour=0.0
        )
        for _ in range(spec.clean_scenarios)
    ]
    xs, ys = [], []
    for sc in scenarios:
        steps = np.arange(int(spec.hours * 3600 / sc.interval_s), dtype=np.int64)
        ends = window_end_indices(len(steps))
        for site in sc.sensors:
            for pollutant in sc.pollutants:
                values = channel_values(sc, site.sensor, pollutant, steps)
                labels = label_windows(sc, site.sensor, pollutant, ends)
                keep = labels >= 0
                xs.append(window_features(sliding_windows(values))[keep])
                ys.append(labels[keep])
    return np.concatenate(xs), np.concatenate(ys)


def train(x: np.ndarray, y: np.ndarray, seed: int) -> GradientBoostingClassifier:
    """Gradient-boosted trees on every positive, every negative that shows any rise, and a
    seeded ``EASY_NEGATIVE_FRACTION`` of the flat ones (re-weighted so the probabilities stay
    calibrated): the flat windows are most of the data and teach the model little."""
    from sklearn.ensemble import GradientBoostingClassifier

    informative = (y == 1) | (x[:, FEATURE_NAMES.index("rise_z")] > 1.0)
    sampled = np.random.default_rng(seed).random(len(y)) < EASY_NEGATIVE_FRACTION
    keep = informative | sampled
    weight = np.where(informative, 1.0, 1.0 / EASY_NEGATIVE_FRACTION)[keep]
    clf = GradientBoostingClassifier(
        n_estimators=N_TREES, max_depth=TREE_DEPTH, learning_rate=0.1, random_state=seed
    )
    return clf.fit(x[keep], y[keep], sample_weight=weight)


def to_onnx(clf: GradientBoostingClassifier, seed: int) -> bytes:
    """skl2onnx export, reduced to one input ``features`` [N, F] and one output
    ``leak_probability`` [N] (column 1 of the class probabilities)."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx as skl_to_onnx

    model = skl_to_onnx(
        clf,
        np.zeros((1, N_FEATURES), dtype=np.float32),
        options={id(clf): {"zipmap": False}},
        target_opset=OPSET,
        naming="gd_",
    )
    graph = model.graph
    probs = next(o.name for o in graph.output if "prob" in o.name)
    graph.input[0].name, old_input = INPUT_NAME, graph.input[0].name
    for node in graph.node:
        node.input[:] = [INPUT_NAME if n == old_input else n for n in node.input]
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph.initializer.append(helper.make_tensor("gd_positive_class", TensorProto.INT64, [], [1]))
    graph.node.append(helper.make_node("Gather", [probs, "gd_positive_class"], [OUTPUT_NAME], axis=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"]))
    graph.name = "gas_leak_detector"
    model.ir_version = IR_VERSION
    model.producer_name = "garrison.models.build"
    model.producer_version = MODEL_VERSION
    model.doc_string = "Leak probability per feature window; see MODEL_CARD.md"
    del model.metadata_props[:]
    helper.set_model_props(
        model,
        {
            "version": MODEL_VERSION,
            "seed": str(seed),
            "features": ",".join(FEATURE_NAMES),
            "window": str(WINDOW),
            "step": str(STEP),
            "threshold": str(DEFAULT_THRESHOLD),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def build(
    seed: int = DEFAULT_SEED,
    out_dir: Path = DEFAULT_MODEL_PATH.parent,
    *,
    model_name: str = DEFAULT_MODEL_PATH.name,
    spec: TrainSpec | None = None,
    eval_spec: EvalSpec | None = None,
    eval_seed: int = DEFAULT_EVAL_SEED,
) -> BuildReport:
    spec = spec or TrainSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y = training_data(seed, spec)
    blob = to_onnx(train(x, y, seed), seed)
    model_path = out_dir / model_name
    model_path.write_bytes(blob)
    write_windows_model(model_path)
    metrics = evaluate(load_detector(model_path), seed=eval_seed, spec=eval_spec, config=EpisodeConfig())
    report = BuildReport(
        model_path=model_path,
        card_path=out_dir / "model_card.json",
        version=MODEL_VERSION,
        seed=seed,
        n_windows=len(y),
        n_positive=int(y.sum()),
        model_bytes=len(blob),
        model_sha256=hashlib.sha256(blob).hexdigest(),
        opsets=_opsets(blob),
        metrics=metrics,
        heuristic_metrics=evaluate(HeuristicDetector(), seed=eval_seed, spec=eval_spec),
        meets_quality_bar=meets_quality_bar(metrics),
    )
    _write_card(report, spec, eval_seed, out_dir)
    return report


def _opsets(blob: bytes) -> dict[str, int]:
    import onnx

    return {op.domain or "ai.onnx": op.version for op in onnx.load_from_string(blob).opset_import}


def _card(report: BuildReport, spec: TrainSpec, eval_seed: int) -> dict[str, object]:
    evaluate_cmd = f"python -m models.evaluate --model models/{report.model_path.name} --seed {eval_seed}"
    return {
        "name": "gas_leak_detector",
        "version": report.version,
        "file": report.model_path.name,
        "sha256": report.model_sha256,
        "bytes": report.model_bytes,
        "onnx": {"ir_version": IR_VERSION, "opsets": report.opsets},
        "input": {"name": INPUT_NAME, "shape": ["N", N_FEATURES], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["N"], "dtype": "float32"},
        "features": list(FEATURE_NAMES),
        "window": {"readings": WINDOW, "step": STEP, "head": HEAD, "interval_s": 10.0},
        "threshold": DEFAULT_THRESHOLD,
        "episodes": {k: getattr(EpisodeConfig(), k) for k in ("threshold", "release", "min_on", "min_off")},
        "seed": report.seed,
        "training_data": {
            "source": "models.simulator.random_scenario, rng random.Random('train-<seed>')",
            **{k: getattr(spec, k) for k in spec.__dataclass_fields__},
            "windows": report.n_windows,
            "positive_windows": report.n_positive,
        },
        "classifier": f"sklearn GradientBoostingClassifier ({N_TREES} trees, depth {TREE_DEPTH}) "
        "exported with skl2onnx",
        "held_out_metrics": report.metrics.as_dict(),
        "meets_quality_bar": report.meets_quality_bar,
        "quality_bar": "leak recall >= 0.95; <= 1 false incident per 24 sensor-hours",
        "heuristic_fallback_metrics": report.heuristic_metrics.as_dict(),
        "measured_by": f"python -m models.build --seed {report.seed} (runs models.evaluate); "
        f"re-measure from the repo root: {evaluate_cmd} (add --heuristic for the fallback)",
    }


def _write_card(report: BuildReport, spec: TrainSpec, eval_seed: int, out_dir: Path) -> None:
    card = _card(report, spec, eval_seed)
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    m, h = report.metrics, report.heuristic_metrics
    md = f"""# Model card: gas leak detector {report.version}

Generated by `python -m models.build --seed {report.seed}`; do not edit by hand.

| | |
|---|---|
| file | `{report.model_path.name}` ({report.model_bytes} bytes, sha256 `{report.model_sha256[:16]}…`) |
| format | ONNX IR {IR_VERSION}, opsets {report.opsets} |
| input | `{INPUT_NAME}` float32 [N, {N_FEATURES}] |
| output | `{OUTPUT_NAME}` float32 [N], probability of a leak onset in the window |
| window | {WINDOW} readings (10 min at 10 s), a new window every {STEP} readings |
| default threshold | {DEFAULT_THRESHOLD} (episode hysteresis: {card["episodes"]}) |
| training seed | {report.seed} |
| classifier | {card["classifier"]} |

## Features
{chr(10).join(f"{i}. `{name}`" for i, name in enumerate(FEATURE_NAMES))}

See `models/features.py` for definitions.

## Training data
Simulated only (`models.simulator.random_scenario`, rng `random.Random('train-{report.seed}')`):
{spec.scenarios} scenarios of {spec.hours} h x {spec.n_sensors} sensors x 4 pollutants with
~{spec.leaks_per_hour} leaks/h and ~{spec.negatives_per_sensor_hour} hard negatives
(spike, drift, stuck, dropout) per sensor-hour, plus {spec.clean_scenarios} clean scenarios.
{report.n_windows} windows, {report.n_positive} positive (leak onset in view). Windows that see
a leak but not its onset are left out.

## Held-out metrics (evaluation seed {m.seed}, a different rng stream)
Measured by `python -m models.build --seed {report.seed}`; re-measure from the repo root with
`python -m models.evaluate --model models/{report.model_path.name} --seed {m.seed}`
(`--heuristic` for the fallback column).

| metric | model | heuristic fallback |
|---|---|---|
| leak recall (event level, (leak, sensor) pairs) | {_recall(m)} | {_recall(h)} |
| (leak, sensor) pairs hidden by a stuck/silent channel, not scored | {m.masked_exposures} | {h.masked_exposures} |
| median delay plume arrival -> episode start | {m.median_detection_delay_s:.0f} s | {h.median_detection_delay_s:.0f} s |
| (leak, sensor) pairs that raised more than one incident | {m.exposures_with_repeat_incidents} | {h.exposures_with_repeat_incidents} |
| false incidents / 24 sensor-h, clean | {_rate(m.clean_false_incidents, m.clean_sensor_hours)} | {_rate(h.clean_false_incidents, h.clean_sensor_hours)} |
| false incidents / 24 sensor-h, hard negatives | {_rate(m.negative_false_incidents, m.negative_sensor_hours)} | {_rate(h.negative_false_incidents, h.negative_sensor_hours)} |
| false incidents / 24 sensor-h, leak scenarios | {_rate(m.leak_scenario_false_incidents, m.leak_scenario_sensor_hours)} | {_rate(h.leak_scenario_false_incidents, h.leak_scenario_sensor_hours)} |
| river Occupancy CO2 (real, 16-min samples) | {_river(m)} | {_river(h)} |
| quality bar met | {"yes" if report.meets_quality_bar else "NO"} | {"yes" if meets_quality_bar(h) else "NO"} |

A sensor-hour is one sensor with all four pollutant channels for one hour. The river stream has
no gas leak, so every incident there counts as false; its readings are 16 minutes apart, so a
window spans 16 hours instead of 10 minutes (the model was not trained for that cadence).
"""
    (out_dir / "MODEL_CARD.md").write_text(md)
    update_card(windows_model_path(report.model_path))  # the windows model's entry in both files


def _recall(m: EvalReport) -> str:
    return f"{m.leak_recall:.3f} ({m.leaks_detected}/{m.leak_exposures})"


def _rate(count: int, sensor_hours: float) -> str:
    return f"{count * 24.0 / sensor_hours:.3f} ({count} in {sensor_hours:.0f} sensor-h)"


def _river(m: EvalReport) -> str:
    if m.river_incidents is None or m.river_hours is None:
        return "not measured"
    return f"{m.river_false_per_24h:.2f} ({m.river_incidents} in {m.river_hours:.0f} h)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    report = build(args.seed, args.out.parent, model_name=args.out.name)
    print(json.dumps(_card(report, TrainSpec(), DEFAULT_EVAL_SEED)["held_out_metrics"], indent=2))
    print(
        f"wrote {report.model_path} ({report.model_bytes} bytes), quality bar met: {report.meets_quality_bar}"
    )
    return 0 if report.meets_quality_bar else 1


if __name__ == "__main__":
    raise SystemExit(main())
