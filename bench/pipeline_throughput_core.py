"""The InferenceActor's per-chunk work without the actor and without the event log, for
``bench.pipeline_throughput``: it mirrors ``actors.inference.InferenceActor._process_batch`` step by step
(including building the saved state), but stops short of encoding and committing it. With
``batched_features=True`` it computes the chunk's features in one vectorised call instead of one call per
window (the same values: ``window_features`` is row-wise)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.detector import Detector
from models.episodes import EpisodeConfig, EpisodeStarted, EpisodeTracker
from models.features import WindowBuffer, window_features


class PipelineCore:
    def __init__(
        self, detector: Detector, config: EpisodeConfig | None = None, *, batched_features: bool = False
    ) -> None:
        self.detector = detector
        # False: one window_features call per window, as the actor does today; True: one call per chunk
        # (window_features takes [N, WINDOW]), the variant the benchmark compares it with
        self.batched_features = batched_features
        self.config = config or EpisodeConfig()
        self.buffers: dict[str, WindowBuffer] = {}
        self.trackers: dict[str, EpisodeTracker] = {}
        self.proposals = 0
        self.windows = 0

    def process_chunk(self, readings: list[dict[str, Any]]) -> dict[str, Any]:
        """One chunk (one transaction's worth); returns what the actor would save with it."""
        windows = []
        for r in readings:
            key = f"{r['sensor']}|{r['pollutant']}"
            buf = self.buffers.get(key)
            if buf is None:
                buf = self.buffers[key] = WindowBuffer(r["sensor"], r["pollutant"])
            value = float("nan") if r["value"] is None else float(r["value"])
            window = buf.push(float(r["ts"]), value)
            if window is not None:
                windows.append((key, window))
        if windows:
            if self.batched_features:
                features = window_features(np.stack([w.array() for _, w in windows]))
            else:
                features = np.stack([window_features(w.array()) for _, w in windows]).astype(np.float32)
            probabilities = self.detector.predict(features)
            for (key, window), p in zip(windows, probabilities.tolist(), strict=True):
                tracker = self.trackers.get(key)
                if tracker is None:
                    tracker = self.trackers[key] = EpisodeTracker(
                        window.sensor, window.pollutant, self.config
                    )
                if isinstance(tracker.update(window.end_ts, float(p)), EpisodeStarted):
                    self.proposals += 1
            self.windows += len(windows)
        return {
            "buffers": {k: b.state() for k, b in self.buffers.items()},
            "trackers": {k: t.state() for k, t in self.trackers.items()},
        }
