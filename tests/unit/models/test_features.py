import json
import math

import numpy as np
import pytest

from models.features import (
    FEATURE_NAMES,
    STEP,
    WINDOW,
    WindowBuffer,
    sliding_windows,
    window_features,
)
from models.simulator import channel_values, default_scenario

IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def test_single_and_batch_shapes_and_dtype():
    rng = np.random.default_rng(0)
    batch = 20 + rng.normal(size=(5, WINDOW))
    f = window_features(batch)
    assert f.shape == (5, len(FEATURE_NAMES)) and f.dtype == np.float32
    one = window_features(batch[2])
    assert one.shape == (len(FEATURE_NAMES),) and one.dtype == np.float32
    np.testing.assert_array_equal(one, f[2])
    with pytest.raises(ValueError, match="expects"):
        window_features(np.zeros(WINDOW - 1))


def test_all_missing_and_constant_windows_give_finite_features():
    f = window_features(np.stack([np.full(WINDOW, np.nan), np.full(WINDOW, 3.0)]))
    assert np.isfinite(f).all()
    assert f[0, IDX["head_missing_frac"]] == 1.0 and f[0, IDX["tail_missing_frac"]] == 1.0
    assert f[1, IDX["head_flat_frac"]] == 1.0 and f[1, IDX["rise_rel"]] == 0.0


def test_a_sustained_rise_differs_from_a_spike():
    rng = np.random.default_rng(1)
    base = 20 + 0.5 * rng.normal(size=WINDOW)
    rise, spike = base.copy(), base.copy()
    rise[45:] += 40
    spike[50] += 200
    f = window_features(np.stack([rise, spike]))
    assert f[0, IDX["tail_above_frac"]] > 0.7 > f[1, IDX["tail_above_frac"]]
    assert f[0, IDX["rise_rel"]] > 0.5 > abs(f[1, IDX["rise_rel"]])


def test_window_buffer_emits_the_same_windows_as_the_bulk_slicer():
    sc = default_scenario()
    values = channel_values(sc, "S1", "CO", np.arange(300))
    buf = WindowBuffer("S1", "CO")
    emitted = [w for i, v in enumerate(values) if (w := buf.push(i * 10.0, v))]
    bulk = sliding_windows(values)
    assert len(emitted) == len(bulk) == 1 + (300 - WINDOW) // STEP
    np.testing.assert_array_equal(np.stack([w.array() for w in emitted]), bulk)
    assert emitted[0].end_ts == (WINDOW - 1) * 10.0


def test_window_buffer_state_round_trips_through_json_and_ignores_replays():
    values = [float(i) if i % 7 else math.nan for i in range(200)]
    whole = WindowBuffer("S", "NO2")
    expected = [w for i, v in enumerate(values) if (w := whole.push(float(i), v))]
    first = WindowBuffer("S", "NO2")
    got = [w for i, v in enumerate(values[:97]) if (w := first.push(float(i), v))]
    restored = WindowBuffer.from_state(json.loads(json.dumps(first.state())))
    # a replay of already-seen readings after the restart must not emit anything
    assert all(restored.push(float(i), values[i]) is None for i in range(90, 97))
    got += [w for i, v in enumerate(values[97:], start=97) if (w := restored.push(float(i), v))]
    assert [w.end_ts for w in got] == [w.end_ts for w in expected]
    np.testing.assert_array_equal(np.stack([w.array() for w in got]), np.stack([w.array() for w in expected]))


def test_window_buffer_refuses_state_from_another_window_size():
    state = WindowBuffer("S", "CO").state() | {"window": WINDOW + 1}
    with pytest.raises(ValueError, match="discard the saved state"):
        WindowBuffer.from_state(state)
