"""Feature windows over one (sensor, pollutant) channel.

PURE except numpy: no clock, no I/O. The same functions serve the model build (bulk, via
``sliding_windows``) and the inference actor (a chunk at a time, via ``extend_channels`` over the
channels' ``WindowBuffer``), so training and serving cannot drift apart.

A window is ``WINDOW`` consecutive readings; a new one is emitted every ``STEP`` readings. The
first ``HEAD`` readings are the reference ("what was normal just before"), the last
``WINDOW - HEAD`` the part under test. Features are scale-free (relative to the head's level or
its noise), so one model serves every pollutant and unit.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

WINDOW = 60  # 10 min at the simulator's 10 s interval
STEP = 6  # a new window every minute
HEAD = 40
# Up to this many windows with gaps in one call are done one by one in Python (~tens of us each), more
# by the NaN-aware numpy path (a fixed ~1 ms, measured on the 2-core nodes): break-even near 25.
GAPPY_ROWS_IN_PYTHON = 16

FEATURE_NAMES: tuple[str, ...] = (
    "rise_rel",  # tail median vs head median, relative to the head level (signed log1p)
    "rise_z",  # the same difference over the head's noise scale (signed log1p)
    "tail_low_rise_z",  # 20th percentile of the tail vs head level: is the rise sustained?
    "tail_above_frac",  # fraction of tail readings above head level + 3 noise
    "max_step_z",  # largest single-step change over the noise: glitches jump
    "tail_peak_z",  # tail max above tail median over the noise: spikes stick out
    "head_slope_rel",  # trend per window over the head, relative to the level
    "tail_slope_rel",  # trend per window over the tail, relative to the level
    "head_flat_frac",  # fraction of unchanged consecutive readings: stuck sensors
    "tail_flat_frac",
    "head_missing_frac",  # NaN (dropout) fractions
    "tail_missing_frac",
    "tail_cv",  # tail variability relative to its level: plumes are puffy
)
N_FEATURES = len(FEATURE_NAMES)


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _nanquantile(block: np.ndarray, q: float) -> np.ndarray:
    """Row-wise linear-interpolated quantile ignoring NaNs (numpy's ``nanquantile`` falls back to
    a Python loop per row when NaNs are present, ~40x slower for training batches)."""
    ordered = np.sort(block, axis=1)  # NaNs sort last
    n = np.isfinite(block).sum(axis=1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    rows = np.arange(block.shape[0])
    frac = pos - lo
    value = ordered[rows, lo] * (1.0 - frac) + ordered[rows, hi] * frac
    return np.where(n > 0, value, np.nan)


def _slope(block: np.ndarray) -> np.ndarray:
    """Least-squares slope per row (per reading), ignoring NaNs."""
    idx = np.arange(block.shape[1], dtype=np.float64)
    ok = np.isfinite(block)
    n = ok.sum(axis=1)
    xs = np.where(ok, idx, 0.0)
    ys = np.where(ok, block, 0.0)
    sx, sy = xs.sum(axis=1), ys.sum(axis=1)
    sxx, sxy = (xs * xs).sum(axis=1), (xs * ys).sum(axis=1)
    den = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (n * sxy - sx * sy) / np.where(den > 0, den, 1.0), 0.0)


def _flat_frac(block: np.ndarray) -> np.ndarray:
    d = np.diff(block, axis=1)
    ok = np.isfinite(d)
    n = ok.sum(axis=1)
    return np.where(n > 0, ((d == 0) & ok).sum(axis=1) / np.maximum(n, 1), 0.0)


def _sorted_quantile(ordered: np.ndarray, q: float) -> np.ndarray:
    """Quantile of rows that are already sorted and complete (no NaN): the same interpolation, in the
    same floating-point operations, as ``_nanquantile`` on such rows, so both give identical values."""
    n = ordered.shape[1]
    pos = q * max(n - 1, 0)
    lo = math.floor(pos)
    hi = min(lo + 1, max(n - 1, 0))
    frac = pos - lo
    return ordered[:, lo] * (1.0 - frac) + ordered[:, hi] * frac


def _features_reference(arr: np.ndarray) -> np.ndarray:
    """Float64 features of ``[N, WINDOW]`` rows that may hold NaN (dropouts): the general, slower path,
    the definitions the faster paths are tested against (with the frozen pre-vectorisation code in
    tests/unit/models/legacy.py)."""
    head, tail = arr[:, :HEAD], arr[:, HEAD:]
    with warnings.catch_warnings():
        # All-NaN rows (long dropouts) are expected; their features are zeroed by the caller.
        warnings.simplefilter("ignore", RuntimeWarning)
        level = _nanquantile(head, 0.5)
        tail_med = _nanquantile(tail, 0.5)
        tail_low = _nanquantile(tail, 0.2)
        tail_max = np.nanmax(tail, axis=1)
        tail_std = np.nanstd(tail, axis=1)
        noise = 1.4826 * _nanquantile(np.abs(np.diff(head, axis=1)), 0.5) / math.sqrt(2.0)
        max_step = np.nanmax(np.abs(np.diff(arr, axis=1)), axis=1)
    size = np.abs(level) + 1e-6
    # A stuck or very quiet head must not make every small change look enormous.
    noise = np.fmax(noise, 0.01 * size)
    rise = tail_med - level
    tail_n = np.isfinite(tail).sum(axis=1)
    above = (tail > (level + 3.0 * noise)[:, None]).sum(axis=1) / np.maximum(tail_n, 1)
    return np.stack(
        [
            _slog(rise / size),
            _slog(rise / noise),
            _slog((tail_low - level) / noise),
            above,
            _slog(max_step / noise),
            _slog((tail_max - tail_med) / noise),
            _slog(_slope(head) * HEAD / size),
            _slog(_slope(tail) * (WINDOW - HEAD) / size),
            _flat_frac(head),
            _flat_frac(tail),
            np.isnan(head).mean(axis=1),
            np.isnan(tail).mean(axis=1),
            tail_std / (np.abs(tail_med) + 1e-6),
        ],
        axis=1,
    )


# [WINDOW, 4] weights: per row, one matrix product gives the head's sum, its index-weighted sum, and the
# same two for the tail (the sums a least-squares slope needs)
_SUMS = np.zeros((WINDOW, 4))
_SUMS[:HEAD, 0], _SUMS[:HEAD, 1] = 1.0, np.arange(HEAD)
_SUMS[HEAD:, 2], _SUMS[HEAD:, 3] = 1.0, np.arange(WINDOW - HEAD)
_STEP_SPANS = [0, HEAD - 1, HEAD]  # reduceat over the steps: [head's own steps, head->tail, tail's own steps]


def _complete_slope(sy: np.ndarray, sxy: np.ndarray, n: int) -> np.ndarray:
    """``_slope`` for rows without NaN, from their sums (x = 0..n-1, so sx and sxx are constants)."""
    xs = np.arange(n, dtype=np.float64)
    sx, sxx = xs.sum(), (xs * xs).sum()
    return (n * sxy - sx * sy) / (n * sxx - sx * sx)


_SLOG_COLUMNS = [0, 1, 2, 4, 5, 6, 7]  # the features that ``_features_reference`` passes through _slog


def _features_complete(arr: np.ndarray) -> np.ndarray:
    """Float64 features of ``[N, WINDOW]`` rows WITHOUT NaN: ``_features_reference``'s definitions (equal
    within float rounding), with each sort done once, no NaN masks, the sums of both slopes in one matrix
    product and one ``_slog`` over all its columns: about 40 numpy calls for the whole chunk (their fixed
    cost, not the arithmetic, is what dominates at a few hundred windows)."""
    n_rows = arr.shape[0]
    tail = arr[:, HEAD:]
    steps = arr[:, 1:] - arr[:, :-1]  # [N, WINDOW-1]; the head's own steps are the first HEAD-1
    flat = np.add.reduceat(steps == 0, _STEP_SPANS, axis=1)
    np.abs(steps, out=steps)
    head_sorted = np.sort(arr[:, :HEAD], axis=1)
    tail_sorted = np.sort(tail, axis=1)
    level = _sorted_quantile(head_sorted, 0.5)
    tail_med = _sorted_quantile(tail_sorted, 0.5)
    tail_low = _sorted_quantile(tail_sorted, 0.2)
    noise = 1.4826 * _sorted_quantile(np.sort(steps[:, : HEAD - 1], axis=1), 0.5) / math.sqrt(2.0)
    sums = arr @ _SUMS
    tail_mean = sums[:, 2] / (WINDOW - HEAD)
    deviation = tail - tail_mean[:, None]
    deviation *= deviation
    tail_std = np.sqrt(deviation.sum(axis=1) / (WINDOW - HEAD))
    size = np.abs(level) + 1e-6
    noise = np.fmax(noise, 0.01 * size)
    rise = tail_med - level
    out = np.empty((n_rows, N_FEATURES))
    out[:, 0] = rise / size
    out[:, 1] = rise / noise
    out[:, 2] = (tail_low - level) / noise
    out[:, 3] = (tail > (level + 3.0 * noise)[:, None]).sum(axis=1) / (WINDOW - HEAD)
    out[:, 4] = steps.max(axis=1) / noise
    out[:, 5] = (tail_sorted[:, -1] - tail_med) / noise
    out[:, 6] = _complete_slope(sums[:, 0], sums[:, 1], HEAD) * HEAD / size
    out[:, 7] = _complete_slope(sums[:, 2], sums[:, 3], WINDOW - HEAD) * (WINDOW - HEAD) / size
    out[:, 8] = flat[:, 0] / (HEAD - 1)
    out[:, 9] = flat[:, 2] / (WINDOW - HEAD - 1)
    out[:, 10:12] = 0.0  # no missing readings
    out[:, 12] = tail_std / (np.abs(tail_med) + 1e-6)
    out[:, _SLOG_COLUMNS] = _slog(out[:, _SLOG_COLUMNS])
    return out


def _quantile_of_sorted(ordered: list[float], q: float) -> float:
    """``_nanquantile`` of one row whose finite values are ``ordered`` (same interpolation)."""
    n = len(ordered)
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return ordered[lo] * (1.0 - frac) + ordered[hi] * frac


def _slog1(x: float) -> float:
    """``_slog`` of one number (NaN stays NaN, +-inf stays +-inf)."""
    if x != x or x == 0.0:
        return x if x != x else 0.0
    return math.copysign(math.log1p(abs(x)), x)


def _fmax(a: float, b: float) -> float:
    """``np.fmax``: the larger, ignoring a NaN."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a >= b else b


def _least_squares_slope(ys: list[float]) -> float:
    """``_slope`` of one row (per reading, x = the reading's index), NaN skipped."""
    pairs = [(float(i), y) for i, y in enumerate(ys) if y == y]
    n = len(pairs)
    sx = sum(x for x, _ in pairs)
    sy = sum(y for _, y in pairs)
    sxx = sum(x * x for x, _ in pairs)
    sxy = sum(x * y for x, y in pairs)
    den = n * sxx - sx * sx
    return (n * sxy - sx * sy) / den if den > 0 else 0.0


def _flat_fraction(steps: list[float]) -> float:
    finite = [d for d in steps if d == d]
    return sum(d == 0.0 for d in finite) / len(finite) if finite else 0.0


def _gappy_row_features(row: list[float]) -> list[float]:
    """Features of ONE window that has missing readings (NaN), in plain Python: a few windows in a chunk
    have gaps, and numpy's per-call overhead on them (the NaN-aware path is ~100 calls) would cost more
    than all the complete windows of the chunk together. Same definitions as ``_features_reference``
    (equal within float rounding: Python sums left to right, numpy pairwise)."""
    head, tail = row[:HEAD], row[HEAD:]
    head_ok = sorted(v for v in head if v == v)
    tail_ok = sorted(v for v in tail if v == v)
    steps = [abs(b - a) for a, b in itertools.pairwise(row)]  # NaN when either reading is missing
    head_steps = sorted(d for d in steps[: HEAD - 1] if d == d)
    level = _quantile_of_sorted(head_ok, 0.5)
    tail_med = _quantile_of_sorted(tail_ok, 0.5)
    tail_low = _quantile_of_sorted(tail_ok, 0.2)
    tail_max = tail_ok[-1] if tail_ok else math.nan
    if tail_ok:
        mean = sum(tail_ok) / len(tail_ok)
        tail_std = math.sqrt(sum((v - mean) * (v - mean) for v in tail_ok) / len(tail_ok))
    else:
        tail_std = math.nan
    noise = 1.4826 * _quantile_of_sorted(head_steps, 0.5) / math.sqrt(2.0)
    finite_steps = [d for d in steps if d == d]
    max_step = max(finite_steps) if finite_steps else math.nan
    size = abs(level) + 1e-6
    noise = _fmax(noise, 0.01 * size)
    rise = tail_med - level
    bar = level + 3.0 * noise
    above = sum(v > bar for v in tail_ok) / max(len(tail_ok), 1)
    return [
        _slog1(rise / size),
        _slog1(rise / noise),
        _slog1((tail_low - level) / noise),
        above,
        _slog1(max_step / noise),
        _slog1((tail_max - tail_med) / noise),
        _slog1(_least_squares_slope(head) * HEAD / size),
        _slog1(_least_squares_slope(tail) * (WINDOW - HEAD) / size),
        _flat_fraction(steps[: HEAD - 1]),
        _flat_fraction(steps[HEAD:]),
        (HEAD - len(head_ok)) / HEAD,
        (WINDOW - HEAD - len(tail_ok)) / (WINDOW - HEAD),
        tail_std / (abs(tail_med) + 1e-6),
    ]


def window_features(values: np.ndarray) -> np.ndarray:
    """Features of one window (shape ``[WINDOW]`` -> ``[F]``) or a batch (``[N, WINDOW]`` ->
    ``[N, F]``), float32 and always finite (missing data shows up in the missing fractions).

    Rows without NaN (all but a few per mille of windows) take the cheaper ``_features_complete``; a few
    rows with dropouts ``_gappy_row_features`` each, many the general ``_features_reference``."""
    arr = np.asarray(values, dtype=np.float64)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != WINDOW:
        raise ValueError(f"window_features expects [{WINDOW}] or [N, {WINDOW}], got {arr.shape}")
    finite = np.isfinite(arr)
    complete = finite.all(axis=1)
    if complete.all():
        feats = _features_complete(arr)
    else:
        arr = np.where(finite, arr, np.nan)
        gappy = ~complete
        feats = np.empty((arr.shape[0], N_FEATURES))
        feats[complete] = _features_complete(arr[complete])
        if gappy.sum() <= GAPPY_ROWS_IN_PYTHON:
            feats[gappy] = [_gappy_row_features(row) for row in arr[gappy].tolist()]
        else:  # a chunk dense with dropouts: numpy's fixed cost is now the cheaper one
            feats[gappy] = _features_reference(arr[gappy])
    if not np.isfinite(feats).all():  # rare (dropouts, overflow): skip the copy otherwise
        feats = np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
    feats = feats.astype(np.float32)
    return feats[0] if single else feats


def window_end_indices(n_readings: int) -> np.ndarray:
    """Indices (0-based) of the readings that close a window, same rule as ``WindowBuffer``."""
    if n_readings < WINDOW:
        return np.zeros(0, dtype=np.int64)
    return np.arange(WINDOW - 1, n_readings, STEP, dtype=np.int64)


def sliding_windows(values: np.ndarray) -> np.ndarray:
    """All windows ``WindowBuffer`` would emit for a channel's readings, as ``[N, WINDOW]``."""
    values = np.asarray(values, dtype=np.float64)
    ends = window_end_indices(len(values))
    if len(ends) == 0:
        return np.zeros((0, WINDOW))
    view = np.lib.stride_tricks.sliding_window_view(values, WINDOW)
    return view[ends - (WINDOW - 1)]


_WINDOW_OFFSETS = np.arange(WINDOW)


@dataclass(frozen=True, slots=True)
class Window:
    """``WINDOW`` consecutive readings of one channel; ``end_ts`` is the last reading's ts."""

    sensor: str
    pollutant: str
    end_ts: float
    values: tuple[float, ...]

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)


class WindowBuffer:
    """Collects one channel's readings and emits a window every ``STEP`` readings.

    Readings must arrive in ts order; a reading whose ts is not after the last one is ignored,
    so replaying readings after a crash cannot emit a window twice (as is one whose ts is NaN or inf). ``extend`` takes a whole chunk of
    the channel's readings as arrays (the inference hot path); ``push`` one reading (the same rule, one
    at a time). ``state()`` is plain JSON/msgpack-able data (NaN is stored as ``None``) to rebuild the
    buffer with ``WindowBuffer.from_state``.
    """

    def __init__(self, sensor: str, pollutant: str) -> None:
        self.sensor = sensor
        self.pollutant = pollutant
        self._values = np.zeros(0)  # the last min(count, WINDOW) accepted values
        self._count = 0
        self._last_ts: float | None = None

    @property
    def last_ts(self) -> float | None:
        return self._last_ts

    def push(self, ts: float, value: float) -> Window | None:
        windows, ends, _ = self.extend(np.array([ts], dtype=np.float64), np.array([value], dtype=np.float64))
        if not len(windows):
            return None
        return Window(self.sensor, self.pollutant, float(ends[0]), tuple(windows[0].tolist()))

    def extend(self, ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed the channel's next readings (float64 arrays, stream order; NaN = missing value).

        Returns the windows they complete ``[K, WINDOW]``, each window's end ts ``[K]`` and the index in
        ``ts`` of the reading that completed it ``[K]``."""
        if len(ts) == 0:
            return np.zeros((0, WINDOW)), np.zeros(0), np.zeros(0, dtype=np.int64)
        last = self._last_ts
        if (last is None or ts[0] > last) and ts[-1] < np.inf and bool(np.all(ts[1:] > ts[:-1])):
            accepted = None  # the usual case: every reading is new
        else:
            # A reading is new when its ts is after every ts accepted before it, i.e. after the running
            # maximum (a rejected reading is below it and cannot raise it). A ts that is not a finite
            # number cannot be ordered: ignored.
            ordered = np.where(np.isfinite(ts), ts, -np.inf)
            floor = last if last is not None and math.isfinite(last) else -np.inf
            before = np.maximum.accumulate(np.concatenate(([floor], ordered[:-1])))
            accepted = np.flatnonzero(ordered > before)
            ts, values = ts[accepted], values[accepted]
            if len(ts) == 0:
                return np.zeros((0, WINDOW)), np.zeros(0), np.zeros(0, dtype=np.int64)
        c0, m = self._count, len(ts)
        # readings are numbered c0+1 .. c0+m; reading number c closes a window when c >= WINDOW and
        # (c - WINDOW) % STEP == 0
        first = WINDOW if c0 < WINDOW else c0 + STEP - (c0 - WINDOW) % STEP
        closing = np.arange(first - c0 - 1, m, STEP)  # 0-based positions among this chunk's readings
        joined = np.concatenate((self._values, values))
        windows = joined[(closing + len(self._values) - (WINDOW - 1))[:, None] + _WINDOW_OFFSETS]
        self._values = joined[-WINDOW:]
        self._count = c0 + m
        self._last_ts = float(ts[-1])
        positions = closing if accepted is None else accepted[closing]
        return windows, ts[closing], positions

    def state(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "pollutant": self.pollutant,
            "window": WINDOW,
            "step": STEP,
            "count": self._count,
            "last_ts": self._last_ts,
            "values": _nan_as_none(self._values.tolist()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowBuffer:
        if state.get("window") != WINDOW or state.get("step") != STEP:
            raise ValueError(
                f"window buffer state was saved with window={state.get('window')} "
                f"step={state.get('step')}, this code uses window={WINDOW} step={STEP}: "
                "discard the saved state and refill the buffer"
            )
        buf = cls(state["sensor"], state["pollutant"])
        buf._count = int(state["count"])
        buf._last_ts = state["last_ts"]
        buf._values = np.array(
            [math.nan if v is None else float(v) for v in state["values"]], dtype=np.float64
        )[-WINDOW:]
        return buf


def _nan_as_none(values: list[float]) -> list[float | None]:
    """NaN stored as ``None`` (JSON has no NaN); ``sum`` is NaN iff a value is (one C loop: a chunk saves
    every channel's buffer, nearly always without a gap)."""
    if not math.isnan(sum(values)):
        return values  # type: ignore[return-value]
    return [None if v != v else v for v in values]  # v != v: NaN


_NO_WINDOWS = (np.zeros((0, WINDOW)), np.zeros(0), np.zeros(0, dtype=np.int64))


def extend_channels(
    buffers: list[WindowBuffer], ts: np.ndarray, values: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``WindowBuffer.extend`` for many channels at once: readings ``bounds[c]:bounds[c+1]`` of ``ts`` and
    ``values`` belong to ``buffers[c]`` (stream order inside each channel).

    Returns the windows ``[K, WINDOW]``, their end ts ``[K]``, the index in ``ts`` of the reading that
    closed each, and ``window_bounds`` (``[C+1]``: the windows of ``buffers[c]`` are rows
    ``window_bounds[c]:window_bounds[c+1]``). When every reading is new (no replay, ts finite) this is a
    handful of numpy calls for the whole chunk; otherwise each channel takes ``extend``."""
    n = len(ts)
    cuts = bounds.tolist()
    if n == 0 or any(lo >= hi for lo, hi in itertools.pairwise(cuts)):
        return _extend_each(buffers, ts, values, bounds)
    lasts = ts[bounds[1:] - 1]
    increasing = ts[1:] > ts[:-1]
    increasing[bounds[1:-1] - 1] = True  # a channel's first reading is compared with its buffer's last
    before = np.array([-np.inf if b._last_ts is None else b._last_ts for b in buffers])
    if not (increasing.all() and (ts[bounds[:-1]] > before).all() and (lasts < np.inf).all()):
        return _extend_each(buffers, ts, values, bounds)  # a replay, or a ts that is NaN/inf
    # Which readings close a window, and where each window starts in one flat array [tail of channel 0,
    # its new readings, tail of channel 1, ...]: arithmetic per channel on Python ints (a few per
    # channel), not numpy over every reading.
    closing: list[int] = []
    window_starts: list[int] = []
    window_bounds = [0]
    pieces: list[np.ndarray] = []
    offset = 0  # where this channel's tail starts in the flat array
    for c, b in enumerate(buffers):
        lo, hi, c0, kept = cuts[c], cuts[c + 1], b._count, len(b._values)
        # readings are numbered c0+1 ..; number k closes a window when k >= WINDOW, (k - WINDOW) % STEP == 0
        first = (WINDOW if c0 < WINDOW else c0 + STEP - (c0 - WINDOW) % STEP) - c0 - 1  # 0-based in chunk
        closing += range(lo + first, hi, STEP)
        window_starts += range(
            offset + kept + first - (WINDOW - 1), offset + kept + hi - lo - (WINDOW - 1), STEP
        )
        window_bounds.append(len(closing))
        pieces += (b._values, values[lo:hi])
        offset += kept + hi - lo
    flat = np.concatenate(pieces)
    windows = flat[np.array(window_starts, dtype=np.intp)[:, None] + _WINDOW_OFFSETS]
    offset = 0
    for c, (b, last) in enumerate(zip(buffers, lasts.tolist(), strict=True)):
        size = cuts[c + 1] - cuts[c]
        offset += len(b._values) + size
        b._values = flat[offset - min(WINDOW, len(b._values) + size) : offset]
        b._count += size
        b._last_ts = last
    closing_at = np.array(closing, dtype=np.intp)
    return windows, ts[closing_at], closing_at, np.array(window_bounds, dtype=np.intp)


def _extend_each(
    buffers: list[WindowBuffer], ts: np.ndarray, values: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    windows, ends, positions, counts = [_NO_WINDOWS[0]], [_NO_WINDOWS[1]], [_NO_WINDOWS[2]], [0]
    for c, b in enumerate(buffers):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        w, e, p = b.extend(ts[lo:hi], values[lo:hi])
        windows.append(w)
        ends.append(e)
        positions.append(p + lo)
        counts.append(len(w))
    return np.concatenate(windows), np.concatenate(ends), np.concatenate(positions), np.cumsum(counts)
