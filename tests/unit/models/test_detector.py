import numpy as np
import pytest

from models.detector import (
    DEFAULT_MODEL_PATH,
    HeuristicDetector,
    ModelLoadError,
    NonFiniteOutput,
    OnnxDetector,
    load_detector,
)
from models.features import FEATURE_NAMES, WINDOW, window_features

F = len(FEATURE_NAMES)


def _model(path, in_shape, out_shape, nodes, initializers=()):
    helper = pytest.importorskip("onnx.helper")  # the `model` extra; onnxruntime alone can't write
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("features", helper.TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("p", helper.TensorProto.FLOAT, out_shape)],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"version": "test-9"})
    path.write_bytes(model.SerializeToString())
    return path


def _mean_model(path, n_features=F, scale=1.0):
    helper = pytest.importorskip("onnx.helper")
    # p = mean(features * scale) over the feature axis: [N, F] -> [N]
    axes = helper.make_tensor("axes", helper.TensorProto.INT64, [1], [1])
    k = helper.make_tensor("k", helper.TensorProto.FLOAT, [], [scale])
    nodes = [
        helper.make_node("Mul", ["features", "k"], ["scaled"]),
        helper.make_node("ReduceMean", ["scaled", "axes"], ["p"], keepdims=0),
    ]
    return _model(path, ["N", n_features], ["N"], nodes, [axes, k])


def test_missing_file_is_a_load_error_naming_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope\.onnx is missing"):
        load_detector(tmp_path / "nope.onnx")


def test_garbage_bytes_are_a_load_error(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\x01 this is not protobuf \xff" * 10)
    with pytest.raises(ModelLoadError, match=r"garbage\.onnx is not a loadable ONNX model"):
        load_detector(bad)


def test_wrong_feature_count_is_a_load_error(tmp_path):
    path = _mean_model(tmp_path / "wide.onnx", n_features=F + 3)
    with pytest.raises(ModelLoadError, match=f"expects {F + 3} features per window"):
        load_detector(path)


def test_wrong_input_rank_is_a_load_error(tmp_path):
    helper = pytest.importorskip("onnx.helper")
    nodes = [helper.make_node("ReduceMean", ["features"], ["p"], keepdims=0)]
    path = _model(tmp_path / "raw.onnx", ["N"], [], nodes)
    with pytest.raises(ModelLoadError, match=r"input shape \['N'\], expected \[N, 13\]"):
        load_detector(path)


def test_wrong_output_shape_is_a_load_error(tmp_path):
    helper = pytest.importorskip("onnx.helper")
    path = _model(
        tmp_path / "wideout.onnx", ["N", F], ["N", F], [helper.make_node("Identity", ["features"], ["p"])]
    )
    with pytest.raises(ModelLoadError, match="output shape"):
        load_detector(path)


def test_a_valid_model_predicts_and_exposes_its_version(tmp_path):
    det = load_detector(_mean_model(tmp_path / "ok.onnx"))
    x = np.full((3, F), 0.5, dtype=np.float32)
    np.testing.assert_allclose(det.predict(x), [0.5, 0.5, 0.5])
    assert det.version == "test-9"


def test_nan_output_raises_non_finite(tmp_path):
    det = OnnxDetector(_mean_model(tmp_path / "nan.onnx", scale=float("nan")))
    with pytest.raises(NonFiniteOutput, match="non-finite"):
        det.predict(np.zeros((2, F), dtype=np.float32))
    inf = OnnxDetector(_mean_model(tmp_path / "inf.onnx", scale=3e38))
    with pytest.raises(NonFiniteOutput):
        inf.predict(np.full((1, F), 10.0, dtype=np.float32))


def test_heuristic_separates_a_leak_onset_from_clean_air_and_a_spike():
    rng = np.random.default_rng(3)
    base = 20 + 0.6 * rng.normal(size=(3, WINDOW))
    base[0, 42:] += 30 * (1 - np.exp(-np.arange(WINDOW - 42) / 3))  # ~2 min into a plume
    base[2, 52] += 300
    p = HeuristicDetector().predict(window_features(base))
    assert p.shape == (3,) and p.dtype == np.float32
    assert p[0] > 0.85 and p[1] < 0.1 and p[2] < 0.1


def test_committed_model_loads_with_the_documented_interface():
    det = load_detector(DEFAULT_MODEL_PATH)
    assert det.version == det.metadata["version"] != "unknown"
    assert det.metadata["features"].split(",") == list(FEATURE_NAMES)
    assert int(det.metadata["window"]) == WINDOW
    p = det.predict(np.zeros((4, F), dtype=np.float32))
    assert p.shape == (4,) and ((p >= 0) & (p <= 1)).all()
