"""The vectorised inference path against the frozen one-reading-at-a-time path (tests/unit/models/legacy.py):
the same features (1e-9), the same windows and state, the same incidents, and exactly-once resumption from
any chunk boundary (seeded random split points)."""

from __future__ import annotations

import json
import random

import msgspec
import numpy as np
import pytest

from actors.pipeline.sensor import reading_record
from models import features
from models.detector import DEFAULT_MODEL_PATH, HeuristicDetector, load_detector
from models.episodes import EpisodeConfig, EpisodeEnded, EpisodeStarted, EpisodeTracker
from models.features import WINDOW, WindowBuffer, _features_complete, _features_reference, window_features
from models.pipeline import DetectionPipeline, MalformedReading
from models.simulator import default_scenario, generate
from tests.unit.models import legacy

SEEDS = (7, 11, 23)
STEPS = 900  # 2.5 simulated hours x 20 channels: leaks, dropouts, glitches of the default scenario


def _readings(seed: int, steps: int = STEPS) -> list[dict]:
    return [reading_record(r, 1.0) for r in generate(default_scenario(seed), n_steps=steps)]


def _round_trip(state: dict) -> dict:
    """What the actor's durable batch does to the state: msgpack out and back."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(state))


def _legacy_windows(readings: list[dict]) -> np.ndarray:
    buffers: dict[str, legacy.LegacyWindowBuffer] = {}
    out = []
    for r in readings:
        key = f"{r['sensor']}|{r['pollutant']}"
        buf = buffers.setdefault(key, legacy.LegacyWindowBuffer(r["sensor"], r["pollutant"]))
        value = float("nan") if r["value"] is None else float(r["value"])
        if (w := buf.push(float(r["ts"]), value)) is not None:
            out.append(w.array())
    return np.stack(out)


@pytest.fixture(scope="module")
def detector():
    return load_detector(DEFAULT_MODEL_PATH)


@pytest.mark.parametrize("seed", SEEDS)
def test_features_match_the_old_code_on_simulated_windows(seed):
    windows = _legacy_windows(_readings(seed))
    with_gaps = ~np.isfinite(windows).all(axis=1)
    assert with_gaps.any() and (~with_gaps).any()  # both code paths really ran
    new, old = window_features(windows), legacy.window_features(windows)
    assert new.dtype == old.dtype == np.float32
    np.testing.assert_allclose(new, old, rtol=1e-9, atol=1e-9)
    # the float64 values before the cast, for the windows that take the fast path
    complete = windows[~with_gaps]
    np.testing.assert_allclose(
        _features_complete(complete), _features_reference(complete), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("gappy_rows", [1, 5, 40])  # one by one in Python, and the numpy NaN path
def test_features_of_windows_with_gaps_match_the_old_code(gappy_rows):
    rng = np.random.default_rng(gappy_rows)
    windows = 50 + 10 * rng.normal(size=(100, WINDOW)).cumsum(axis=1) / 8
    for row in rng.choice(100, size=gappy_rows, replace=False):
        length = int(rng.integers(1, WINDOW + 1))
        start = int(rng.integers(0, WINDOW - length + 1))
        windows[row, start : start + length] = rng.choice([np.nan, np.inf, -np.inf])
        windows[row, rng.integers(0, WINDOW, size=3)] = np.nan  # and scattered dropouts
    flat = rng.integers(0, 100, size=20)
    windows[flat] = np.round(windows[flat])  # repeated values: the flat fractions
    assert (~np.isfinite(windows).all(axis=1)).sum() == gappy_rows
    np.testing.assert_allclose(
        window_features(windows), legacy.window_features(windows), rtol=1e-6, atol=1e-6
    )
    got = np.array(
        [features._gappy_row_features(r) for r in np.where(np.isfinite(windows), windows, np.nan).tolist()]
    )
    np.testing.assert_allclose(
        np.nan_to_num(got, nan=0.0, posinf=0.0, neginf=0.0),
        np.nan_to_num(
            _features_reference(np.where(np.isfinite(windows), windows, np.nan)),
            nan=0.0,
            posinf=0.0,
            neginf=0.0,
        ),
        rtol=1e-9,
        atol=1e-9,
    )


def test_features_of_odd_windows_match_the_old_code():
    rng = np.random.default_rng(3)
    base = 20 + rng.normal(size=(6, WINDOW))
    base[1] = 5.0  # stuck
    base[2, 10:30] = np.nan  # dropout in the head
    base[3] = np.nan  # all missing
    base[4, 50] = np.inf
    base[5, :] = 1e-9 * np.arange(WINDOW)  # tiny values
    np.testing.assert_allclose(window_features(base), legacy.window_features(base), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(window_features(np.zeros((0, WINDOW))).shape, (0, 13))


def test_window_buffer_extend_emits_what_push_did_including_replays():
    rng = random.Random(5)
    ts = [float(i) for i in range(400)]
    for at in (70, 150, 151, 300):  # replays: a ts not after the last one
        ts.insert(at, ts[at - rng.randint(1, 20)])
    values = [rng.gauss(10, 1) if i % 37 else float("nan") for i in range(len(ts))]
    old = legacy.LegacyWindowBuffer("S", "CO")
    expected = [
        (w.end_ts, w.values) for t, v in zip(ts, values, strict=True) if (w := old.push(t, v)) is not None
    ]
    new = WindowBuffer("S", "CO")
    got = []
    i = 0
    while i < len(ts):
        n = rng.randint(0, 40)
        windows, ends, positions = new.extend(np.array(ts[i : i + n]), np.array(values[i : i + n]))
        assert [ts[i + p] for p in positions] == ends.tolist()
        got += [(e, tuple(w)) for e, w in zip(ends.tolist(), windows.tolist(), strict=True)]
        i += n
        new = WindowBuffer.from_state(json.loads(json.dumps(new.state())))  # a restart at every chunk
    assert len(got) == len(expected) > 50
    assert [e for e, _ in got] == [e for e, _ in expected]
    np.testing.assert_array_equal(np.array([w for _, w in got]), np.array([w for _, w in expected]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_reading_whose_ts_is_not_finite_is_ignored(bad):
    """(The old code accepted a NaN ts and then accepted everything after it, replays included.)"""
    ts = np.arange(100, dtype=np.float64)
    clean = WindowBuffer("S", "CO").extend(ts, ts)
    buf = WindowBuffer("S", "CO")
    first = buf.extend(np.append(ts[:70], bad), np.append(ts[:70], 1e6))
    second = buf.extend(ts[60:], ts[60:])  # overlaps what was accepted: a replay, then new readings
    assert buf.last_ts == 99.0
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]), clean[0])
    np.testing.assert_array_equal(np.concatenate([first[1], second[1]]), clean[1])


def _events(tracker_update, ts, probs):
    return [(i, e) for i, (t, p) in enumerate(zip(ts, probs, strict=True)) if (e := tracker_update(t, p))]


@pytest.mark.parametrize("seed", range(40))
def test_update_many_matches_update_at_random_split_points(seed):
    rng = np.random.default_rng(seed)
    n = 400
    # bursty scores: long quiet stretches, leaks, flicker around both thresholds
    probs = np.clip(rng.choice([0.05, 0.55, 0.9, 0.97], size=n, p=[0.55, 0.15, 0.15, 0.15]), 0, 1)
    probs = np.where(rng.random(n) < 0.3, rng.random(n), probs).astype(np.float32)
    ts = 60.0 * np.arange(n) + 1000.0
    config = EpisodeConfig(min_on=int(rng.integers(1, 4)), min_off=int(rng.integers(1, 7)))
    old = legacy.LegacyTracker("S", "CO", config)
    expected = _events(old.update, ts.tolist(), [float(p) for p in probs])
    assert {type(e) for _, e in expected} == {EpisodeStarted, EpisodeEnded}  # both kinds compared
    new = EpisodeTracker("S", "CO", config)
    got = []
    cuts = sorted(rng.choice(np.arange(1, n), size=int(rng.integers(1, 30)), replace=False).tolist())
    lo = 0
    for hi in [*cuts, n]:
        got += [(lo + i, e) for i, e in new.update_many(ts[lo:hi], probs[lo:hi])]
        new = EpisodeTracker.from_state(_round_trip(new.state()))
        lo = hi
    assert got == expected
    assert new.state() == old.state()
    # windows already seen are ignored, as by update
    assert new.update_many(ts[-5:], np.ones(5)) == [] and new.state() == old.state()


@pytest.mark.parametrize("seed", SEEDS)
def test_pipeline_gives_the_old_incidents_and_state(seed, detector):
    readings = _readings(seed)
    old, new = legacy.LegacyPipeline(detector, EpisodeConfig()), DetectionPipeline(detector, EpisodeConfig())
    expected, got = [], []
    for lo in range(0, len(readings), 1536):
        chunk = readings[lo : lo + 1536]
        expected += old.process(chunk)
        got += new.process(chunk)
        assert new.state() == old.state()
    assert len(expected) >= 3  # the scenario's leaks were detected: there was something to compare
    assert [(s, r["ts"]) for s, r in got] == [(s, r["ts"]) for s, r in expected]
    assert new.windows_scored == old.windows_scored


@pytest.mark.parametrize("seed", SEEDS)
def test_pipeline_matches_the_old_code_on_overlapping_chunks_and_late_channels(seed):
    """Chunks that re-read part of the previous one (replays: the slow per-channel path), channels that
    first appear mid-stream, chunk sizes from 1 reading up."""
    rng = random.Random(seed)
    readings = [r for r in _readings(seed, steps=700) if r["sensor"] != "S3" or r["ts"] > 2000.0]
    old = legacy.LegacyPipeline(HeuristicDetector(), EpisodeConfig())
    new = DetectionPipeline(HeuristicDetector(), EpisodeConfig())
    expected, got, lo, replays = [], [], 0, 0
    while lo < len(readings):
        start = max(0, lo - rng.choice([0, 0, 0, 5, 300]))
        replays += start < lo
        hi = lo + rng.choice([1, 7, 60, 500, 1536, 4000])
        expected += old.process(readings[start:hi])
        got += new.process(readings[start:hi])
        assert new.state() == old.state()
        lo = hi
    assert replays and len(expected) >= 3
    assert [(s, r["ts"]) for s, r in got] == [(s, r["ts"]) for s, r in expected]
    assert new.windows_scored == old.windows_scored


@pytest.mark.parametrize("seed", [*SEEDS, 1, 2])
def test_resuming_from_random_chunk_boundaries_gives_the_uninterrupted_incidents(seed, detector):
    """What the actor does after a crash: state saved with the offset of the last chunk, a fresh
    pipeline built from it, the rest read from there (the chunk in flight at the crash is redone)."""
    readings = _readings(seed)
    rng = random.Random(seed)
    straight = DetectionPipeline(detector, EpisodeConfig())
    expected = straight.process(readings)
    assert len(expected) >= 3
    got: list = []
    saved: dict = {}
    pipeline = DetectionPipeline(detector, EpisodeConfig())
    offset, crashes, restarts = 0, 0, 0
    while offset < len(readings):
        chunk = readings[offset : offset + rng.randint(1, 3000)]  # the redone chunk may be longer
        out = pipeline.process(chunk)
        if rng.random() < 0.25:  # crash before the durable batch: output and state are lost
            pipeline = DetectionPipeline(detector, EpisodeConfig(), saved)
            crashes += 1
            continue
        got += out
        offset += len(chunk)
        saved = _round_trip(pipeline.state())  # one transaction with the offset in the actor
        if rng.random() < 0.4:  # a restart between chunks (SIGKILL, supervisor restart)
            pipeline = DetectionPipeline(detector, EpisodeConfig(), saved)
            restarts += 1
    assert crashes and restarts  # the faults really happened
    assert [(s, r["ts"]) for s, r in got] == [(s, r["ts"]) for s, r in expected]


def test_old_saved_state_restores_into_the_new_pipeline(detector):
    """State persisted by the old actor code resumes into the new code with the same incidents."""
    readings = _readings(7)
    first = DetectionPipeline(detector, EpisodeConfig()).process(readings)[0][1]
    same = ("sensor", "pollutant", "ts")
    half = (
        next(i for i, r in enumerate(readings) if [r[k] for k in same] == [first[k] for k in same]) - 200
    )  # mid-way into the first leak
    old = legacy.LegacyPipeline(detector, EpisodeConfig())
    old.process(readings[:half])
    saved = _round_trip(old.state())
    expected = old.process(readings[half:])
    got = DetectionPipeline(detector, EpisodeConfig(), saved).process(readings[half:])
    assert len(expected) >= 3 and [s for s, _ in got] == [s for s, _ in expected]


def test_replayed_readings_after_a_restore_are_not_scored_twice():
    readings = _readings(7, steps=200)
    pipeline = DetectionPipeline(HeuristicDetector(), EpisodeConfig())
    pipeline.process(readings)
    scored = pipeline.windows_scored
    assert scored > 0
    again = DetectionPipeline(HeuristicDetector(), EpisodeConfig(), _round_trip(pipeline.state()))
    assert again.process(readings) == [] and again.windows_scored == 0


def test_a_reading_that_is_not_a_number_is_a_typed_error_naming_it():
    readings = _readings(7, steps=5)
    readings[17] = readings[17] | {"value": "high"}
    with pytest.raises(MalformedReading, match=r"reading 17 of the chunk .* value='high', not a number"):
        DetectionPipeline(HeuristicDetector(), EpisodeConfig()).process(readings)


def test_started_episodes_carry_their_reading():
    readings = _readings(7)
    started = DetectionPipeline(HeuristicDetector(), EpisodeConfig()).process(readings)
    assert started
    for s, reading in started:
        assert isinstance(s, EpisodeStarted)
        assert (reading["sensor"], reading["pollutant"]) == (s.sensor, s.pollutant)
        assert reading["ts"] >= s.start_ts
        assert reading in readings  # the very reading that closed the window, every field as stored
