"""Group per-window leak probabilities into episodes (incidents) with hysteresis.

PURE: no clock, no I/O. Time is the ``ts`` of each window, given by the caller.

One tracker per (sensor, pollutant). An episode starts when ``min_on`` consecutive windows
reach ``threshold``; it stays open while windows stay at or above ``release`` and closes after
``min_off`` consecutive windows below it. A leak that lasts many windows is therefore one
episode, and its ``incident_id`` depends only on (sensor, pollutant, start ts), so a replay of the
same readings yields the same ids (idempotent downstream).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.85


def incident_id(sensor: str, pollutant: str, episode_start_ts: float) -> str:
    """Deterministic 16-hex-digit id; ts is rounded to the millisecond so that float noise from
    different code paths (e.g. a replay) cannot change it."""
    key = f"{sensor}\x1f{pollutant}\x1f{round(episode_start_ts * 1000)}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EpisodeConfig:
    threshold: float = DEFAULT_THRESHOLD
    release: float = 0.5
    min_on: int = 2
    min_off: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.release <= self.threshold <= 1.0:
            raise ValueError(
                f"need 0 <= release <= threshold <= 1, got release={self.release} threshold={self.threshold}"
            )
        if self.min_on < 1 or self.min_off < 1:
            raise ValueError(f"min_on and min_off must be >= 1, got {self.min_on}, {self.min_off}")


@dataclass(frozen=True, slots=True)
class EpisodeStarted:
    sensor: str
    pollutant: str
    start_ts: float
    incident_id: str
    confidence: float


@dataclass(frozen=True, slots=True)
class EpisodeEnded:
    sensor: str
    pollutant: str
    start_ts: float
    end_ts: float
    incident_id: str
    peak_confidence: float


class EpisodeTracker:
    """Hysteresis over one channel's window probabilities; see the module docstring."""

    def __init__(self, sensor: str, pollutant: str, config: EpisodeConfig | None = None) -> None:
        self.sensor = sensor
        self.pollutant = pollutant
        self.config = config or EpisodeConfig()
        self._run_start: float | None = None  # ts of the first window of the current "on" run
        self._run_len = 0
        self._open_start: float | None = None  # start ts of the open episode
        self._off_len = 0
        self._peak = 0.0
        self._last_ts: float | None = None

    @property
    def open_incident(self) -> str | None:
        if self._open_start is None:
            return None
        return incident_id(self.sensor, self.pollutant, self._open_start)

    def update(self, ts: float, probability: float) -> EpisodeStarted | EpisodeEnded | None:
        """Feed one window's leak probability; windows not after the last one are ignored."""
        if self._last_ts is not None and ts <= self._last_ts:
            return None
        self._last_ts = ts
        cfg = self.config
        if self._open_start is None:
            if probability >= cfg.threshold:
                start = ts if self._run_start is None else self._run_start
                self._run_start = start
                self._run_len += 1
                self._peak = max(self._peak, probability)
                if self._run_len >= cfg.min_on:
                    self._open_start = start
                    self._off_len = 0
                    return EpisodeStarted(
                        self.sensor,
                        self.pollutant,
                        start,
                        incident_id(self.sensor, self.pollutant, start),
                        probability,
                    )
            else:
                self._run_len, self._run_start, self._peak = 0, None, 0.0
            return None
        self._peak = max(self._peak, probability)
        if probability >= cfg.release:
            self._off_len = 0
            return None
        self._off_len += 1
        if self._off_len < cfg.min_off:
            return None
        ended = EpisodeEnded(
            self.sensor,
            self.pollutant,
            self._open_start,
            ts,
            incident_id(self.sensor, self.pollutant, self._open_start),
            self._peak,
        )
        self._open_start, self._run_start = None, None
        self._run_len, self._off_len, self._peak = 0, 0, 0.0
        return ended

    @property
    def at_rest(self) -> bool:
        """No episode open and no run of high windows under way."""
        return self._open_start is None and self._run_len == 0

    def pass_quiet(self, last_ts: float) -> None:
        """What ``update_many`` does at rest with windows that all score below the threshold, the last
        one at ``last_ts``: nothing but remember the ts (the pipeline checks both conditions in bulk)."""
        if self._last_ts is None or last_ts > self._last_ts:
            self._last_ts = float(last_ts)

    def update_many(
        self, ts: np.ndarray, probabilities: np.ndarray
    ) -> list[tuple[int, EpisodeStarted | EpisodeEnded]]:
        """``update`` over many windows at once (ts increasing), with numpy over the scores and Python
        only where an episode starts or ends. Returns ``(index in ts, change)`` for each change; the
        tracker ends in the state the same ``update`` calls would leave it in."""
        p = np.asarray(probabilities, dtype=np.float64)
        ts = np.asarray(ts, dtype=np.float64)
        if self._last_ts is not None:
            if not len(ts) or ts[-1] <= self._last_ts:
                return []
            if ts[0] <= self._last_ts:  # a replay of windows already seen: skip them
                skip = int(np.searchsorted(ts, self._last_ts, side="right"))
                return [(i + skip, c) for i, c in self.update_many(ts[skip:], p[skip:])]
        if not len(ts):
            return []
        cfg = self.config
        changes: list[tuple[int, EpisodeStarted | EpisodeEnded]] = []
        i = 0
        while i < len(p):
            seg = p[i:]
            if self._open_start is None:
                if self._run_len == 0 and seg.max() < cfg.threshold:
                    break  # the common case: nothing near a detection (state is already at rest)
                # length of the run of windows >= threshold ending at each window (carried in from the
                # previous call until the first low window)
                idx = np.arange(len(seg))
                last_low = np.maximum.accumulate(np.where(seg >= cfg.threshold, -1, idx))
                run = idx - last_low + np.where(last_low < 0, self._run_len, 0)
                hit = np.flatnonzero(run >= cfg.min_on)
                end = int(hit[0]) if len(hit) else len(seg) - 1
                low = int(last_low[end])
                if low >= 0 and low == end:  # ends on a low window: at rest
                    self._run_len, self._run_start, self._peak = 0, None, 0.0
                else:
                    if low >= 0:  # the run began inside this segment
                        self._run_start, self._peak = float(ts[i + low + 1]), 0.0
                    elif self._run_start is None:
                        self._run_start = float(ts[i])
                    self._run_len = int(run[end])
                    self._peak = max(self._peak, float(seg[low + 1 : end + 1].max()))
                if not len(hit):
                    break
                self._open_start, self._off_len = self._run_start, 0
                assert self._open_start is not None
                changes.append(
                    (
                        i + end,
                        EpisodeStarted(
                            self.sensor,
                            self.pollutant,
                            self._open_start,
                            incident_id(self.sensor, self.pollutant, self._open_start),
                            float(seg[end]),
                        ),
                    )
                )
                i += end + 1
                continue
            idx = np.arange(len(seg))
            last_high = np.maximum.accumulate(np.where(seg < cfg.release, -1, idx))
            off = idx - last_high + np.where(last_high < 0, self._off_len, 0)
            hit = np.flatnonzero(off >= cfg.min_off)
            end = int(hit[0]) if len(hit) else len(seg) - 1
            self._peak = max(self._peak, float(seg[: end + 1].max()))
            self._off_len = int(off[end])
            if not len(hit):
                break
            ended = EpisodeEnded(
                self.sensor,
                self.pollutant,
                self._open_start,
                float(ts[i + end]),
                incident_id(self.sensor, self.pollutant, self._open_start),
                self._peak,
            )
            changes.append((i + end, ended))
            self._open_start, self._run_start = None, None
            self._run_len, self._off_len, self._peak = 0, 0, 0.0
            i += end + 1
        self._last_ts = float(ts[-1])
        return changes

    def state(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "pollutant": self.pollutant,
            "config": {
                "threshold": self.config.threshold,
                "release": self.config.release,
                "min_on": self.config.min_on,
                "min_off": self.config.min_off,
            },
            "run_start": self._run_start,
            "run_len": self._run_len,
            "open_start": self._open_start,
            "off_len": self._off_len,
            "peak": self._peak,
            "last_ts": self._last_ts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpisodeTracker:
        tracker = cls(state["sensor"], state["pollutant"], EpisodeConfig(**state["config"]))
        tracker._run_start = state["run_start"]
        tracker._run_len = int(state["run_len"])
        tracker._open_start = state["open_start"]
        tracker._off_len = int(state["off_len"])
        tracker._peak = float(state["peak"])
        tracker._last_ts = state["last_ts"]
        return tracker
