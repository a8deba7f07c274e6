"""Readings -> feature windows -> detector -> episode starts: the inference actor's per-chunk work.

No clock and no event log: the actor feeds chunks of readings and persists :meth:`DetectionPipeline.state`
with its offset; a benchmark or an evaluation can drive the same object in process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from models.detector import Detector
from models.episodes import EpisodeConfig, EpisodeStarted, EpisodeTracker
from models.features import WindowBuffer, window_features


class DetectionPipeline:
    """Per-channel window buffers and episode trackers. ``process`` returns the episodes that started,
    each with the reading that completed its window. Raises ``NonFiniteOutput`` when the detector returns
    NaN/inf (a crash for the actor: its state was not saved, so the chunk is redone after the restart)."""

    def __init__(
        self, detector: Detector, config: EpisodeConfig, state: dict[str, Any] | None = None
    ) -> None:
        self.detector = detector
        self.config = config
        saved = state or {}
        self.buffers = {k: WindowBuffer.from_state(v) for k, v in saved.get("buffers", {}).items()}
        self.trackers = {k: EpisodeTracker.from_state(v) for k, v in saved.get("trackers", {}).items()}
        self.windows_scored = 0

    def process(self, readings: Iterable[dict[str, Any]]) -> list[tuple[EpisodeStarted, dict[str, Any]]]:
        windows = []
        for r in readings:
            key = f"{r['sensor']}|{r['pollutant']}"
            buf = self.buffers.get(key)
            if buf is None:
                buf = self.buffers[key] = WindowBuffer(r["sensor"], r["pollutant"])
            value = float("nan") if r["value"] is None else float(r["value"])
            window = buf.push(float(r["ts"]), value)
            if window is not None:
                windows.append((key, window, r))
        if not windows:
            return []
        # one vectorised call for the whole chunk: ~70x cheaper per window than one call each
        features = window_features(np.stack([w.array() for _, w, _ in windows])).astype(np.float32)
        probabilities = self.detector.predict(features)
        self.windows_scored += len(windows)
        started = []
        for (key, window, reading), p in zip(windows, probabilities.tolist(), strict=True):
            tracker = self.trackers.get(key)
            if tracker is None:
                tracker = self.trackers[key] = EpisodeTracker(window.sensor, window.pollutant, self.config)
            change = tracker.update(window.end_ts, float(p))
            if isinstance(change, EpisodeStarted):
                started.append((change, reading))
        return started

    def state(self) -> dict[str, Any]:
        return {
            "buffers": {k: b.state() for k, b in self.buffers.items()},
            "trackers": {k: t.state() for k, t in self.trackers.items()},
        }
