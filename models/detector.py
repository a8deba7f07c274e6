"""Leak detectors: the ONNX model, a rule-based fallback, and loading with typed errors.

Both detectors take ``[N, F]`` float32 feature rows (``models.features.FEATURE_NAMES``) and
return ``[N]`` leak probabilities (``predict``), or raw ``[N, WINDOW]`` windows (``predict_windows``).
The ONNX detector has two files: the classifier (``gas_detector.onnx``, features in) and, next to it, the
same classifier composed with the features computed inside the graph (``gas_detector_windows.onnx``,
windows in; built by ``python -m models.features_graph``), so onnxruntime does the feature arithmetic in
C++ instead of ~40 numpy calls per chunk. ``load_detector`` raises ``ModelLoadError`` naming the file and
what is wrong with either; the inference actor then falls back to ``HeuristicDetector``. A model that
returns NaN/inf raises ``NonFiniteOutput``, which the actor treats as a crash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.features import FEATURE_NAMES, N_FEATURES, WINDOW, window_features
from models.features_graph import (  # numpy-only at import time: onnx is imported by its builders alone
    FEATURES_OUTPUT,
    INPUT_NAME,
    INPUTS,
    OUTPUT_NAME,
    SORTED_INPUT,
    SORTED_ROWS,
    STEPS_INPUT,
    WINDOWS_INPUT,
    graph_feeds,
    windows_model_path,
)

DEFAULT_MODEL_PATH = Path(__file__).with_name("gas_detector.onnx")
__all__ = [
    "DEFAULT_MODEL_PATH",
    "FEATURES_OUTPUT",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "Detector",
    "DetectorError",
    "HeuristicDetector",
    "ModelLoadError",
    "NonFiniteOutput",
    "OnnxDetector",
    "load_detector",
    "windows_model_path",
]


class DetectorError(Exception):
    """Base class for detector failures."""


class ModelLoadError(DetectorError):
    """The model file cannot be used: missing, not ONNX, or the wrong shape."""


class NonFiniteOutput(DetectorError):
    """The model produced NaN or inf: treat it as a crash of the inference engine."""


class Detector(Protocol):
    version: str

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``[N, F]`` features -> ``[N]`` leak probabilities in [0, 1]."""
        ...

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """``[N, WINDOW]`` raw windows (NaN = missing reading) -> ``[N]`` leak probabilities, equal to
        ``predict(window_features(windows))``."""
        ...


def _as_batch(features: np.ndarray) -> np.ndarray:
    batch = np.asarray(features, dtype=np.float32)
    if batch.ndim == 1:
        batch = batch[None, :]
    if batch.ndim != 2 or batch.shape[1] != N_FEATURES:
        raise ValueError(f"expected features of shape [N, {N_FEATURES}], got {batch.shape}")
    return batch


def _as_windows(windows: np.ndarray) -> np.ndarray:
    arr = np.asarray(windows, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != WINDOW:
        raise ValueError(f"expected windows of shape [N, {WINDOW}], got {arr.shape}")
    return arr


def _checked(probabilities: np.ndarray, source: str) -> np.ndarray:
    if not np.all(np.isfinite(probabilities)):
        bad = int(np.count_nonzero(~np.isfinite(probabilities)))
        raise NonFiniteOutput(f"{source} returned {bad} non-finite value(s) (NaN/inf)")
    return probabilities


def _session(blob: bytes, path: Path) -> Any:
    import onnxruntime as ort  # imported here: the pure modules must stay importable without it

    opts = ort.SessionOptions()
    # One thread: the nodes have 2 cores shared by every actor process.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise ModelLoadError(f"model file {path} is not a loadable ONNX model: {exc}") from exc


def _read(path: Path, build_hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} is missing (build it: {build_hint})") from None
    except OSError as exc:
        raise ModelLoadError(f"model file {path} cannot be read: {exc}") from exc


class OnnxDetector:
    """``onnxruntime`` sessions on the classifier (input ``[N, F]``, output ``[N]``/``[N, 1]``) and on its
    composed windows model (inputs ``graph_feeds(windows)``, output ``[N]``; see ``models.features_graph``).

    Both files are checked when they are loaded, not at the first window: shapes, and that the windows model
    was built from this very classifier (its ``classifier_sha256``), so a classifier swapped under a stale
    windows model is a ``ModelLoadError``, not two models answering differently. A rollout writes the
    windows model first, then the classifier (the actor watches the classifier file).

    A classifier WITHOUT a windows model next to it still loads (``windows_model`` is None) unless
    ``require_windows``: ``predict_windows`` then takes the Python features for every row, the same answers
    at the old speed, rather than the heuristic's worse ones for a file that was left out of a copy.
    """

    def __init__(
        self, path: str | Path, windows_path: str | Path | None = None, *, require_windows: bool = False
    ) -> None:
        self.path = Path(path)
        windows = windows_model_path(self.path) if windows_path is None else Path(windows_path)
        blob = _read(self.path, "python -m models.build")
        self._session = _session(blob, self.path)
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"model file {self.path} has {len(inputs)} inputs, expected 1")
        shape = list(inputs[0].shape)
        if len(shape) != 2:
            raise ModelLoadError(
                f"model file {self.path} has input shape {shape}, expected [N, {N_FEATURES}]"
            )
        if shape[1] != N_FEATURES:
            raise ModelLoadError(
                f"model file {self.path} expects {shape[1]} features per window, this code "
                f"computes {N_FEATURES} ({', '.join(FEATURE_NAMES)}): rebuild the model"
            )
        if inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"model file {self.path} input is {inputs[0].type}, expected tensor(float)")
        out_shape = list(outputs[0].shape) if outputs else []
        if not outputs or len(out_shape) not in (1, 2) or (len(out_shape) == 2 and out_shape[1] != 1):
            raise ModelLoadError(
                f"model file {self.path} output shape is {out_shape}, expected [N] or [N, 1]"
            )
        self._input = inputs[0].name
        self._output = outputs[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        self.version = meta.get("version", "unknown")
        # The path of the windows model in use, None when there is none (see the class docstring).
        self.windows_model: Path | None = None
        self._windows_session: Any = None
        if require_windows or windows.exists():
            self._windows_session = self._load_windows(windows, hashlib.sha256(blob).hexdigest())
            self.windows_model = windows

    def _load_windows(self, path: Path, classifier_sha256: str) -> Any:
        rebuild = f"python -m models.features_graph --classifier {self.path}"
        session = _session(_read(path, rebuild), path)
        got = [(i.name, i.type, list(i.shape)) for i in session.get_inputs()]
        shapes = {
            WINDOWS_INPUT: ["N", WINDOW],
            STEPS_INPUT: ["N", WINDOW - 1],
            SORTED_INPUT: [SORTED_ROWS, "N"],
        }
        expected = [(name, "tensor(double)", shapes[name]) for name in INPUTS]
        if got != expected:
            raise ModelLoadError(
                f"model file {path} has inputs {got} (name, type, width), expected {expected}: "
                f"rebuild it with {rebuild}"
            )
        if OUTPUT_NAME not in [o.name for o in session.get_outputs()]:
            raise ModelLoadError(
                f"model file {path} has no output {OUTPUT_NAME!r}: rebuild it with {rebuild}"
            )
        built_from = session.get_modelmeta().custom_metadata_map.get("classifier_sha256")
        if built_from != classifier_sha256:
            raise ModelLoadError(
                f"model file {path} was built from another classifier than {self.path} "
                f"(sha256 {built_from} != {classifier_sha256}): rebuild it with {rebuild}"
            )
        return session

    def predict(self, features: np.ndarray) -> np.ndarray:
        batch = _as_batch(features)
        (out,) = self._session.run([self._output], {self._input: batch})
        return _checked(np.asarray(out, dtype=np.float32).reshape(-1), f"model {self.path.name}")

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """Rows without NaN/inf go through the windows model in ONE ``run``; rows with missing readings
        (a few per mille) through ``window_features``' NaN-aware path and the classifier; input order kept."""
        arr = _as_windows(windows)
        if self._windows_session is None:
            return self.predict(window_features(arr))
        complete = np.isfinite(arr).all(axis=1)
        if complete.all():
            return self._run_windows(arr) if len(arr) else np.zeros(0, dtype=np.float32)
        out = np.empty(len(arr), dtype=np.float32)
        if complete.any():
            out[complete] = self._run_windows(arr[complete])
        gappy = ~complete
        out[gappy] = self.predict(window_features(arr[gappy]))
        return out

    def _run_windows(self, arr: np.ndarray) -> np.ndarray:
        (out,) = self._windows_session.run([OUTPUT_NAME], graph_feeds(arr))
        return _checked(np.asarray(out, dtype=np.float32).reshape(-1), f"model {self.windows_model}")


_IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


class HeuristicDetector:
    """Rule-based fallback: a sustained, sizeable rise of the tail over the head that is neither
    a lone spike nor the end of a stuck/missing stretch. Probabilities come from a logistic
    score so the same thresholds and hysteresis apply as for the model."""

    version = "heuristic-1"

    def predict(self, features: np.ndarray) -> np.ndarray:
        f = _as_batch(features).astype(np.float64)
        rise_rel = f[:, _IDX["rise_rel"]]  # signed log1p of the relative rise
        low_z = f[:, _IDX["tail_low_rise_z"]]
        above = f[:, _IDX["tail_above_frac"]]
        head_flat = f[:, _IDX["head_flat_frac"]]
        missing = f[:, _IDX["head_missing_frac"]] + f[:, _IDX["tail_missing_frac"]]
        # log1p(0.5) ~ 0.41: a rise of at least half the level, held by most of the tail.
        score = 12.0 * (rise_rel - 0.41) + 3.0 * (above - 0.7) + 1.5 * (low_z - 2.5)
        score -= 10.0 * np.clip(head_flat - 0.3, 0.0, None) + 10.0 * np.clip(missing - 0.2, 0.0, None)
        return _checked((1.0 / (1.0 + np.exp(-score))).astype(np.float32), "heuristic")

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        return self.predict(window_features(_as_windows(windows)))


def load_detector(
    path: str | Path = DEFAULT_MODEL_PATH,
    windows_path: str | Path | None = None,
    *,
    require_windows: bool = False,
) -> OnnxDetector:
    """Load the ONNX detector (the classifier at ``path`` and its windows model, by default
    ``windows_model_path(path)``; see ``OnnxDetector``) or raise ``ModelLoadError`` (callers fall back to
    the heuristic)."""
    return OnnxDetector(path, windows_path, require_windows=require_windows)
