"""The window features computed inside the ONNX graph (models/features_graph.py) against the numpy definitions
(``_features_complete``), ``predict_windows`` against ``predict(window_features(...))``, the committed windows
model against its builder, and the load errors of a bad windows model."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.detector import (
    DEFAULT_MODEL_PATH,
    HeuristicDetector,
    ModelLoadError,
    load_detector,
    windows_model_path,
)
from models.features import FEATURE_NAMES, HEAD, WINDOW, _features_complete, sliding_windows, window_features
from models.features_graph import FEATURES_OUTPUT, WINDOWS_INPUT, graph_feeds
from models.simulator import channel_values, default_scenario, random_scenario

onnx = pytest.importorskip("onnx")  # the builder needs the `model` extra
from models.features_graph import compose  # noqa: E402

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _scenario_windows(scenario, hours: float = 3.0) -> np.ndarray:
    steps = np.arange(int(hours * 3600 / scenario.interval_s))
    return np.concatenate(
        [
            sliding_windows(channel_values(scenario, site.sensor, pollutant, steps))
            for site in scenario.sensors
            for pollutant in scenario.pollutants
        ]
    )


@pytest.fixture(scope="module")
def simulated() -> np.ndarray:
    """Windows of the default scenario (leaks, glitches) and of a random one dense with hard negatives
    (spikes, drifts, stuck sensors, dropouts), rows with NaN included."""
    rng = random.Random("features-graph")
    dense = random_scenario(rng, hours=3.0, n_sensors=3, leaks_per_hour=3.0, negatives_per_sensor_hour=4.0)
    return np.concatenate([_scenario_windows(default_scenario(7)), _scenario_windows(dense)])


@pytest.fixture(scope="module")
def complete(simulated: np.ndarray) -> np.ndarray:
    """The complete simulated windows, also rescaled: huge and tiny levels, negative values, and a few
    hand-made ones (flat, a lone step, all zeros, a rise a hair above flat)."""
    base = simulated[np.isfinite(simulated).all(axis=1)]
    flat = np.full((1, WINDOW), 17.25)
    step = np.concatenate([np.zeros(HEAD), np.full(WINDOW - HEAD, 3.0)])[None, :]
    hair = (1.0 + 1e-12 * (np.arange(WINDOW) >= HEAD))[None, :]  # rise_rel ~ 1e-12: log1p's small-x digits
    made = np.concatenate([flat, step, np.zeros((1, WINDOW)), hair, -hair])
    return np.concatenate([base, base[::7] * 1e6, base[::11] * 1e-6, base[::5] - 2.0 * base[::5].max(), made])


@pytest.fixture(scope="module")
def detector():
    return load_detector(DEFAULT_MODEL_PATH, require_windows=True)


def _graph_features(detector, windows: np.ndarray) -> np.ndarray:
    session = detector._windows_session
    (feats,) = session.run([FEATURES_OUTPUT], graph_feeds(windows))
    return feats


def test_the_test_windows_cover_the_hard_cases(complete: np.ndarray, simulated: np.ndarray) -> None:
    ref = _features_complete(complete)
    assert (ref[:, IDX["head_flat_frac"]] > 0.9).any()  # stuck sensors
    assert (ref[:, IDX["max_step_z"]] > 5.0).any()  # spikes
    assert (ref[:, IDX["rise_rel"]] > np.log1p(0.5)).any()  # leak onsets
    assert (complete < 0).any() and (np.abs(complete).max(axis=1) > 1e6).any()
    assert ((np.abs(complete).max(axis=1) < 1e-4) & (np.abs(complete).max(axis=1) > 0)).any()
    assert (~np.isfinite(simulated).all(axis=1)).any()  # dropouts, for the mixed batches


def test_graph_features_equal_the_numpy_definitions(detector, complete: np.ndarray) -> None:
    got, want = _graph_features(detector, complete), _features_complete(complete)
    assert got.shape == want.shape == (len(complete), len(FEATURE_NAMES)) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    # The rise a hair above flat (and below): log(1 + x) instead of an accurate log1p would be off by ~1e-4
    # relative there, which the absolute tolerance above would not see.
    hair = want[-2:, IDX["rise_rel"]]
    assert 0 < hair[0] < 1e-11 and -1e-11 < hair[1] < 0
    np.testing.assert_allclose(got[-2:, IDX["rise_rel"]], hair, rtol=1e-9, atol=0)


def test_topk_variant_prepares_the_same_input_inside_the_graph(complete: np.ndarray) -> None:
    """The benchmark's in-graph variant (TopK sorts, Transpose) computes the same features."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        compose(DEFAULT_MODEL_PATH.read_bytes(), sort_in_graph=True), providers=["CPUExecutionProvider"]
    )
    (feats,) = session.run([FEATURES_OUTPUT], {WINDOWS_INPUT: complete})
    np.testing.assert_allclose(feats, _features_complete(complete), rtol=1e-9, atol=1e-15)


def test_predict_windows_equals_predict_of_window_features(detector, complete: np.ndarray) -> None:
    want = detector.predict(window_features(complete))
    got = detector.predict_windows(complete)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (want > 0.85).any() and (want < 0.1).any()  # leaks and quiet air: the comparison means something


def test_mixed_batch_keeps_the_input_order(detector, simulated: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    batch = simulated[rng.permutation(len(simulated))[:1500]].copy()
    batch[3, 10] = np.inf  # a non-finite reading goes the NaN-aware way too
    gappy = ~np.isfinite(batch).all(axis=1)
    assert 10 < gappy.sum() < len(batch) - 10  # both paths really run, interleaved
    got = detector.predict_windows(batch)
    np.testing.assert_allclose(got, detector.predict(window_features(batch)), rtol=0, atol=1e-6)
    # Row by row, each path on its own: the merge put every answer back at its row.
    for rows in (np.flatnonzero(gappy), np.flatnonzero(~gappy)):
        np.testing.assert_allclose(got[rows], detector.predict(window_features(batch[rows])), atol=1e-6)
    assert len(np.unique(got)) > 20


def test_edge_shapes(detector, complete: np.ndarray) -> None:
    assert detector.predict_windows(np.zeros((0, WINDOW))).shape == (0,)
    one = detector.predict_windows(complete[0])
    assert one.shape == (1,)
    np.testing.assert_allclose(one, detector.predict(window_features(complete[:1])), atol=1e-6)
    with pytest.raises(ValueError, match=f"expected windows of shape \\[N, {WINDOW}\\]"):
        detector.predict_windows(np.zeros((2, WINDOW + 1)))


def test_heuristic_predict_windows(simulated: np.ndarray) -> None:
    heuristic = HeuristicDetector()
    np.testing.assert_array_equal(
        heuristic.predict_windows(simulated[:300]), heuristic.predict(window_features(simulated[:300]))
    )


def test_committed_windows_model_is_up_to_date_with_its_builder() -> None:
    committed = windows_model_path(DEFAULT_MODEL_PATH).read_bytes()
    rebuilt = compose(DEFAULT_MODEL_PATH.read_bytes())
    assert rebuilt == committed, (
        "models/gas_detector_windows.onnx is stale: run python -m models.features_graph"
    )
    assert compose(DEFAULT_MODEL_PATH.read_bytes()) == rebuilt  # deterministic


def _classifier_copy(tmp_path: Path) -> Path:
    path = tmp_path / "clf.onnx"
    shutil.copyfile(DEFAULT_MODEL_PATH, path)
    return path


def test_corrupt_windows_model_is_a_load_error(tmp_path: Path) -> None:
    clf = _classifier_copy(tmp_path)
    windows_model_path(clf).write_bytes(b"\x08\x07 not a protobuf \xff" * 40)
    assert load_detector(DEFAULT_MODEL_PATH).windows_model is not None  # the good pair loads
    with pytest.raises(ModelLoadError, match=r"clf_windows\.onnx is not a loadable ONNX model"):
        load_detector(clf)


def test_windows_model_of_another_classifier_is_a_load_error(tmp_path: Path) -> None:
    model = onnx.load(str(DEFAULT_MODEL_PATH))
    model.doc_string += " (retrained)"  # another classifier file: another sha256
    clf = tmp_path / "clf.onnx"
    onnx.save(model, str(clf))
    shutil.copyfile(windows_model_path(DEFAULT_MODEL_PATH), windows_model_path(clf))
    with pytest.raises(ModelLoadError, match="was built from another classifier"):
        load_detector(clf)
    windows_model_path(clf).write_bytes(compose(clf.read_bytes()))  # rebuilt for it: loads
    assert load_detector(clf).windows_model == windows_model_path(clf)


def test_windows_model_with_the_wrong_input_is_a_load_error(tmp_path: Path) -> None:
    clf = _classifier_copy(tmp_path)
    windows_model_path(clf).write_bytes(compose(clf.read_bytes(), sort_in_graph=True))  # input "windows"
    with pytest.raises(ModelLoadError, match=r"has inputs .*windows.*expected"):
        load_detector(clf)


def test_missing_windows_model_falls_back_to_python_features_unless_required(
    tmp_path: Path, complete
) -> None:
    clf = _classifier_copy(tmp_path)
    det = load_detector(clf)
    assert det.windows_model is None and det._windows_session is None
    np.testing.assert_allclose(
        det.predict_windows(complete), det.predict(window_features(complete)), atol=1e-6
    )
    with pytest.raises(
        ModelLoadError, match=r"clf_windows\.onnx is missing \(build it: python -m models\.features_graph"
    ):
        load_detector(clf, require_windows=True)
