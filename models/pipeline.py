"""Readings -> feature windows -> detector -> episode starts: the inference actor's per-chunk work.

No clock and no event log: the actor feeds chunks of readings and persists :meth:`DetectionPipeline.state`
with its offset; a benchmark or an evaluation can drive the same object in process.

The chunk is handled as arrays: one pass of C-level ``map``/``itemgetter`` pulls (channel, ts, value) out
of the reading dicts, then every channel's readings go through ``WindowBuffer.extend``, all the chunk's
windows through ONE ``window_features`` and ONE ``predict`` (in stream order, as a reading-at-a-time loop
would score them), and each channel's scores through ``EpisodeTracker.update_many``. Python runs per
channel and per episode boundary, not per reading or per window.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import numpy as np

from models.detector import Detector
from models.episodes import EpisodeConfig, EpisodeStarted, EpisodeTracker
from models.features import WindowBuffer, window_features

_CHANNEL = itemgetter("sensor", "pollutant")
_TS = itemgetter("ts")
_VALUE = itemgetter("value")


class MalformedReading(ValueError):
    """A reading's ts or value is not a number: the chunk cannot be scored."""


def _numbers(readings: list[dict[str, Any]], field: str, getter: itemgetter) -> np.ndarray:
    """``field`` of every reading as float64 (``None`` -> NaN), or ``MalformedReading`` naming the first
    bad one."""
    try:
        return np.array(list(map(getter, readings)), dtype=np.float64)
    except (TypeError, ValueError):
        for i, r in enumerate(readings):
            try:
                np.array([r[field]], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise MalformedReading(
                    f"reading {i} of the chunk ({r.get('sensor')!r}/{r.get('pollutant')!r}) has "
                    f"{field}={r.get(field)!r}, not a number: fix its producer (the chunk is retried "
                    "as is after a restart)"
                ) from exc
        raise


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
        self._keys: dict[tuple[Any, Any], str] = {}  # (sensor, pollutant) -> "sensor|pollutant"

    def _channel_keys(self, pairs: list[tuple[Any, Any]]) -> list[str]:
        try:
            return list(map(self._keys.__getitem__, pairs))
        except KeyError:
            for pair in dict.fromkeys(pairs):  # first-seen order, as the buffers are created
                if pair not in self._keys:
                    key = self._keys[pair] = f"{pair[0]}|{pair[1]}"
                    if key not in self.buffers:
                        self.buffers[key] = WindowBuffer(pair[0], pair[1])
            return list(map(self._keys.__getitem__, pairs))

    def process(self, readings: Iterable[dict[str, Any]]) -> list[tuple[EpisodeStarted, dict[str, Any]]]:
        chunk = readings if isinstance(readings, list) else list(readings)
        if not chunk:
            return []
        try:
            pairs = list(map(_CHANNEL, chunk))
        except KeyError as exc:
            raise MalformedReading(f"a reading of the chunk has no {exc} field") from exc
        keys = self._channel_keys(pairs)
        ts = _numbers(chunk, "ts", _TS)
        values = _numbers(chunk, "value", _VALUE)
        # group the chunk by channel, stream order kept inside each channel
        names = list(dict.fromkeys(keys))
        codes = np.array(list(map({k: i for i, k in enumerate(names)}.__getitem__, keys)))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        per_channel = []  # (key, windows, end ts, chunk index of the closing reading)
        for c, key in enumerate(names):
            rows = order[bounds[c] : bounds[c + 1]]
            windows, ends, positions = self.buffers[key].extend(ts[rows], values[rows])
            if len(windows):
                per_channel.append((key, windows, ends, rows[positions]))
        if not per_channel:
            return []
        closing = np.concatenate([p for *_, p in per_channel])
        stream_order = np.argsort(closing, kind="stable")
        windows = np.concatenate([w for _, w, _, _ in per_channel])[stream_order]
        # one vectorised call for the whole chunk, in stream order (the batch a per-reading loop builds)
        probabilities = np.empty(len(windows))
        probabilities[stream_order] = self.detector.predict(window_features(windows))
        self.windows_scored += len(windows)
        started: list[tuple[int, EpisodeStarted]] = []
        lo = 0
        for key, w, ends, positions in per_channel:
            tracker = self.trackers.get(key)
            if tracker is None:
                buf = self.buffers[key]
                tracker = self.trackers[key] = EpisodeTracker(buf.sensor, buf.pollutant, self.config)
            changes = tracker.update_many(ends, probabilities[lo : lo + len(w)])
            started += [(int(positions[i]), c) for i, c in changes if isinstance(c, EpisodeStarted)]
            lo += len(w)
        started.sort(key=lambda s: s[0])
        return [(change, chunk[position]) for position, change in started]

    def state(self) -> dict[str, Any]:
        return {
            "buffers": {k: b.state() for k, b in self.buffers.items()},
            "trackers": {k: t.state() for k, t in self.trackers.items()},
        }
