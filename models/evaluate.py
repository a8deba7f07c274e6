"""Measure a detector on held-out simulated data and on one real sensor stream.

``python -m models.evaluate [--model models/gas_detector.onnx] [--seed 2026] [--heuristic]``

Readings go through exactly the inference path of the actors: ``WindowBuffer`` per channel ->
``window_features`` -> ``Detector.predict`` (batched) -> ``EpisodeTracker``. Metrics:

- event-level leak recall: a (leak, sensor) pair counts as detected when an episode starts for
  that sensor and the leak's pollutant between the plume's arrival and its end there. Pairs
  whose channel was stuck or silent at the arrival (``LeakExposure.masked``) cannot be seen and
  are counted apart, not in the recall;
- false incidents per 24 sensor-hours: episodes that start outside every leak's attribution
  span at that channel (arrival .. end + one window), on clean data, on data dense with hard
  negatives (spikes, drift, stuck values, dropouts), and on the leak scenarios themselves.
  A sensor-hour is one sensor with all its pollutant channels for an hour;
- the same false-incident rate on river's real CO2 room-occupancy stream (every episode there
  is false: it contains no gas leak).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path

import numpy as np

from models.detector import DEFAULT_MODEL_PATH, Detector, HeuristicDetector, load_detector
from models.episodes import EpisodeConfig, EpisodeStarted, EpisodeTracker
from models.features import WINDOW, WindowBuffer, window_features
from models.simulator import DEFAULT_INTERVAL_S, Scenario, channel_values, leak_exposures, random_scenario

DEFAULT_EVAL_SEED = 2026


@dataclass(frozen=True, slots=True)
class EvalSpec:
    """How much held-out data to simulate; ``quick`` is the size the unit tests use."""

    leak_scenarios: int = 12
    leak_hours: float = 6.0
    clean_hours: float = 48.0
    negative_hours: float = 48.0
    n_sensors: int = 6

    @classmethod
    def quick(cls) -> EvalSpec:
        return cls(leak_scenarios=3, leak_hours=4.0, clean_hours=8.0, negative_hours=8.0)


@dataclass(frozen=True, slots=True)
class EvalReport:
    seed: int
    detector_version: str
    threshold: float
    leak_exposures: int
    masked_exposures: int
    leaks_detected: int
    leak_recall: float
    median_detection_delay_s: float
    exposures_with_repeat_incidents: int
    leak_scenario_false_incidents: int
    leak_scenario_sensor_hours: float
    clean_false_incidents: int
    clean_sensor_hours: float
    clean_false_per_24h: float
    negative_false_incidents: int
    negative_sensor_hours: float
    negative_false_per_24h: float
    river_incidents: int | None
    river_hours: float | None
    river_false_per_24h: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_channel(
    sensor: str,
    pollutant: str,
    timestamps: Sequence[float],
    values: Sequence[float],
    detector: Detector,
    config: EpisodeConfig,
) -> list[EpisodeStarted]:
    """One channel through the actor path; returns the episode starts (incidents)."""
    buffer = WindowBuffer(sensor, pollutant)
    windows = [w for ts, v in zip(timestamps, values, strict=True) if (w := buffer.push(ts, v))]
    if not windows:
        return []
    probabilities = detector.predict(window_features(np.stack([w.array() for w in windows])))
    tracker = EpisodeTracker(sensor, pollutant, config)
    updates = (tracker.update(w.end_ts, float(p)) for w, p in zip(windows, probabilities, strict=True))
    return [u for u in updates if isinstance(u, EpisodeStarted)]


def run_scenario(
    scenario: Scenario, n_steps: int, detector: Detector, config: EpisodeConfig
) -> list[EpisodeStarted]:
    steps = np.arange(n_steps, dtype=np.int64)
    ts = (steps * scenario.interval_s).tolist()
    out: list[EpisodeStarted] = []
    for site in scenario.sensors:
        for pollutant in scenario.pollutants:
            values = channel_values(scenario, site.sensor, pollutant, steps).tolist()
            out.extend(run_channel(site.sensor, pollutant, ts, values, detector, config))
    return out


@dataclass(frozen=True, slots=True)
class _Score:
    exposures: int
    detected: int
    delays: tuple[float, ...]
    repeats: int
    false_incidents: int
    masked: int


def score_scenario(scenario: Scenario, incidents: Iterable[EpisodeStarted]) -> _Score:
    exposures = leak_exposures(scenario)
    grace = WINDOW * scenario.interval_s
    incidents = list(incidents)
    detected, repeats, masked, delays = 0, 0, 0, []
    attributed: set[int] = set()
    for exp in exposures:
        mine = [
            i
            for i, inc in enumerate(incidents)
            if inc.sensor == exp.sensor
            and inc.pollutant == exp.pollutant
            and exp.arrival_ts <= inc.start_ts <= exp.end_ts + grace
        ]
        attributed.update(mine)
        in_window = [incidents[i].start_ts for i in mine if incidents[i].start_ts <= exp.end_ts]
        if exp.masked:
            masked += 1
        elif in_window:
            detected += 1
            delays.append(min(in_window) - exp.arrival_ts)
        repeats += len(mine) > 1
    return _Score(
        len(exposures) - masked, detected, tuple(delays), repeats, len(incidents) - len(attributed), masked
    )


def river_co2_stream() -> tuple[list[float], list[float]]:
    """River's bundled room-occupancy CO2 stream (UCI Occupancy, every 16th reading)."""
    from river.drift.datasets import Occupancy  # optional: only the evaluation needs it

    ts, values = [], []
    for x, y in Occupancy():
        # The file's times are naive; pin them to UTC so ids do not depend on the host's zone.
        ts.append(x["time"].replace(tzinfo=UTC).timestamp())
        values.append(float(y["V4"]))
    return ts, values


def evaluate(
    detector: Detector,
    *,
    seed: int = DEFAULT_EVAL_SEED,
    spec: EvalSpec | None = None,
    config: EpisodeConfig | None = None,
    include_river: bool = True,
) -> EvalReport:
    spec = spec or EvalSpec()
    config = config or EpisodeConfig()
    rng = random.Random(f"eval-{seed}")

    def steps(hours: float) -> int:
        return int(hours * 3600 / DEFAULT_INTERVAL_S)

    scores = [
        score_scenario(sc, run_scenario(sc, steps(spec.leak_hours), detector, config))
        for sc in (
            random_scenario(rng, hours=spec.leak_hours, n_sensors=spec.n_sensors, leaks_per_hour=1.5)
            for _ in range(spec.leak_scenarios)
        )
    ]
    exposures = sum(s.exposures for s in scores)
    detected = sum(s.detected for s in scores)
    delays = [d for s in scores for d in s.delays]
    clean = random_scenario(
        rng,
        hours=spec.clean_hours,
        n_sensors=spec.n_sensors,
        leaks_per_hour=0.0,
        negatives_per_sensor_hour=0.0,
    )
    clean_false = len(run_scenario(clean, steps(spec.clean_hours), detector, config))
    negatives = random_scenario(
        rng,
        hours=spec.negative_hours,
        n_sensors=spec.n_sensors,
        leaks_per_hour=0.0,
        negatives_per_sensor_hour=1.0,
    )
    negative_false = len(run_scenario(negatives, steps(spec.negative_hours), detector, config))
    river_incidents = river_hours = river_rate = None
    if include_river:
        ts, values = river_co2_stream()
        river_incidents = len(run_channel("occupancy", "CO2", ts, values, detector, config))
        river_hours = (ts[-1] - ts[0]) / 3600.0
        river_rate = river_incidents * 24.0 / river_hours
    clean_sh = spec.clean_hours * spec.n_sensors
    neg_sh = spec.negative_hours * spec.n_sensors
    return EvalReport(
        seed=seed,
        detector_version=detector.version,
        threshold=config.threshold,
        leak_exposures=exposures,
        masked_exposures=sum(s.masked for s in scores),
        leaks_detected=detected,
        leak_recall=detected / max(exposures, 1),
        median_detection_delay_s=float(np.median(delays)) if delays else float("nan"),
        exposures_with_repeat_incidents=sum(s.repeats for s in scores),
        leak_scenario_false_incidents=sum(s.false_incidents for s in scores),
        leak_scenario_sensor_hours=spec.leak_scenarios * spec.leak_hours * spec.n_sensors,
        clean_false_incidents=clean_false,
        clean_sensor_hours=clean_sh,
        clean_false_per_24h=clean_false * 24.0 / clean_sh,
        negative_false_incidents=negative_false,
        negative_sensor_hours=neg_sh,
        negative_false_per_24h=negative_false * 24.0 / neg_sh,
        river_incidents=river_incidents,
        river_hours=river_hours,
        river_false_per_24h=river_rate,
    )


def meets_quality_bar(report: EvalReport) -> bool:
    return (
        report.leak_recall >= 0.95
        and report.clean_false_per_24h <= 1.0
        and report.negative_false_per_24h <= 1.0
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED)
    parser.add_argument("--threshold", type=float, default=EpisodeConfig().threshold)
    parser.add_argument("--heuristic", action="store_true", help="evaluate the rule-based fallback")
    parser.add_argument("--no-river", action="store_true", help="skip the real CO2 stream")
    args = parser.parse_args(argv)
    detector: Detector = HeuristicDetector() if args.heuristic else load_detector(args.model)
    report = evaluate(
        detector,
        seed=args.seed,
        config=EpisodeConfig(threshold=args.threshold, release=min(0.5, args.threshold)),
        include_river=not args.no_river,
    )
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if meets_quality_bar(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
