"""Readings -> feature windows -> detector -> episode starts: the inference actor's per-chunk work.

No clock and no event log: the actor feeds chunks of readings and persists :meth:`DetectionPipeline.state`
with its offset; a benchmark or an evaluation can drive the same object in process.

The chunk is handled as arrays: columns of readings (``models/readings.py``: a block record's buffers, or
reading dicts converted once), every channel's readings through ``WindowBuffer.extend``, all the chunk's
windows through ONE ``predict_windows`` (features and model in one onnxruntime run; in stream order, as a
reading-at-a-time loop would score them), and each channel's scores through
``EpisodeTracker.update_many``. Python runs per channel and per episode boundary, not per reading or per
window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from models.detector import Detector
from models.episodes import EpisodeConfig, EpisodeStarted, EpisodeTracker
from models.features import WindowBuffer, extend_channels
from models.readings import MalformedReading, ReadingColumns

__all__ = ["DetectionPipeline", "MalformedReading"]


class DetectionPipeline:
    """Per-channel window buffers and episode trackers. ``process`` returns the episodes that started,
    each with the reading that completed its window. Raises ``NonFiniteOutput`` when the detector returns
    NaN/inf (a crash for the actor: its state was not saved, so the chunk is redone after the restart).

    ``state()`` has the same shape it had when the pipeline went one reading at a time (``buffers`` and
    ``trackers`` keyed ``"sensor|pollutant"``), so state saved by either restores into the other."""

    def __init__(
        self, detector: Detector, config: EpisodeConfig, state: dict[str, Any] | None = None
    ) -> None:
        self.detector = detector
        self.config = config
        saved = state or {}
        self.buffers = {k: WindowBuffer.from_state(v) for k, v in saved.get("buffers", {}).items()}
        self.trackers = {k: EpisodeTracker.from_state(v) for k, v in saved.get("trackers", {}).items()}
        self.windows_scored = 0
        # channels whose buffer or tracker changed since the last ``take_changes`` (what a commit writes)
        self.touched: set[str] = set()
        self._code: dict[tuple[Any, Any], int] = {}  # (sensor, pollutant) -> channel number
        self._channels: list[str] = []  # channel number -> "sensor|pollutant" (a key of buffers)
        self._number: dict[str, int] = {}  # and back

    def _channel_codes(self, columns: ReadingColumns) -> np.ndarray:
        """The channel number of each reading; new channels get a buffer, in first-seen order (a channel
        is (sensor, pollutant): its unit, location or source may change between readings)."""
        numbers = []
        for descriptor in columns.descriptors:
            pair = (descriptor[0], descriptor[1])
            code = self._code.get(pair)
            if code is None:
                key = f"{pair[0]}|{pair[1]}"  # two spellings of one key share a channel, as before
                if key not in self._number:
                    self._number[key] = len(self._channels)
                    self._channels.append(key)
                    if key not in self.buffers:
                        self.buffers[key] = WindowBuffer(pair[0], pair[1])
                code = self._code[pair] = self._number[key]
            numbers.append(code)
        return np.array(numbers, dtype=np.intp)[columns.index]

    def process(
        self, readings: ReadingColumns | Iterable[dict[str, Any]]
    ) -> list[tuple[EpisodeStarted, dict[str, Any]]]:
        if isinstance(readings, ReadingColumns):
            chunk = readings
        else:
            chunk = ReadingColumns.from_dicts(readings if isinstance(readings, list) else list(readings))
        if not len(chunk):
            return []
        codes = self._channel_codes(chunk)
        ts, values = chunk.ts, chunk.value
        # group the chunk by channel, stream order kept inside each channel
        order = np.argsort(codes, kind="stable")
        per_code = np.bincount(codes)
        present = np.flatnonzero(per_code)
        bounds = np.concatenate(([0], np.cumsum(per_code[present])))
        keys = [self._channels[c] for c in present.tolist()]
        self.touched.update(keys)  # only these channels' buffers and trackers can change below
        windows, ends, closing, window_bounds = extend_channels(
            [self.buffers[k] for k in keys], ts[order], values[order], bounds
        )
        if not len(windows):
            return []
        # one model call for the whole chunk, in stream order (the batch a per-reading loop builds)
        closing = order[closing]  # chunk index of the reading that closed each window
        stream_order = np.argsort(closing, kind="stable")
        probabilities = np.empty(len(windows))
        probabilities[stream_order] = self.detector.predict_windows(windows[stream_order])
        self.windows_scored += len(windows)
        threshold = self.config.threshold
        nonempty = np.flatnonzero(np.diff(window_bounds))
        peaks = np.maximum.reduceat(probabilities, window_bounds[nonempty]).tolist()
        started: list[tuple[int, EpisodeStarted]] = []
        for c, peak in zip(nonempty.tolist(), peaks, strict=True):
            key, lo, hi = keys[c], int(window_bounds[c]), int(window_bounds[c + 1])
            tracker = self.trackers.get(key)
            if tracker is None:
                buf = self.buffers[key]
                tracker = self.trackers[key] = EpisodeTracker(buf.sensor, buf.pollutant, self.config)
            if tracker.at_rest and peak < threshold:
                tracker.pass_quiet(float(ends[hi - 1]))  # the usual case: nothing near a detection
                continue
            for i, change in tracker.update_many(ends[lo:hi], probabilities[lo:hi]):
                if isinstance(change, EpisodeStarted):
                    started.append((int(closing[lo + i]), change))
        started.sort(key=lambda s: s[0])
        return [(change, chunk.reading(position)) for position, change in started]

    def state(self) -> dict[str, Any]:
        return {
            "buffers": {k: b.state() for k, b in self.buffers.items()},
            "trackers": {k: t.state() for k, t in self.trackers.items()},
        }

    def take_changes(self) -> dict[str, dict[str, Any]]:
        """The state (copies) of every channel changed since the last call, by channel: what a commit must
        write when the other channels' state is durable already. ``state_of_channels`` of every channel's
        latest such value gives back ``state()``."""
        changed, self.touched = self.touched, set()
        return {
            key: {
                "buffer": self.buffers[key].state(),
                "tracker": None if (tracker := self.trackers.get(key)) is None else tracker.state(),
            }
            for key in changed
        }


def state_of_channels(channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``DetectionPipeline.state()`` assembled from per-channel values of ``take_changes``."""
    return {
        "buffers": {key: value["buffer"] for key, value in channels.items()},
        "trackers": {
            key: value["tracker"] for key, value in channels.items() if value["tracker"] is not None
        },
    }
