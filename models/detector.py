"""Leak detectors: the ONNX model, a rule-based fallback, and loading with typed errors.

Both detectors take ``[N, F]`` float32 feature rows (``models.features.FEATURE_NAMES``) and
return ``[N]`` leak probabilities. ``load_detector`` raises ``ModelLoadError`` naming the file and
what is wrong; the inference actor then falls back to ``HeuristicDetector``. A model that
returns NaN/inf raises ``NonFiniteOutput``, which the actor treats as a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from models.features import FEATURE_NAMES, N_FEATURES

DEFAULT_MODEL_PATH = Path(__file__).with_name("gas_detector.onnx")
INPUT_NAME = "features"
OUTPUT_NAME = "leak_probability"


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


def _as_batch(features: np.ndarray) -> np.ndarray:
    batch = np.asarray(features, dtype=np.float32)
    if batch.ndim == 1:
        batch = batch[None, :]
    if batch.ndim != 2 or batch.shape[1] != N_FEATURES:
        raise ValueError(f"expected features of shape [N, {N_FEATURES}], got {batch.shape}")
    return batch


def _checked(probabilities: np.ndarray, source: str) -> np.ndarray:
    if not np.all(np.isfinite(probabilities)):
        bad = int(np.count_nonzero(~np.isfinite(probabilities)))
        raise NonFiniteOutput(f"{source} returned {bad} non-finite value(s) (NaN/inf)")
    return probabilities


class OnnxDetector:
    """An ``onnxruntime`` session on a model with input ``[N, F]`` and output ``[N]``/``[N, 1]``.

    The shapes are checked when the file is loaded, not at the first window.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file {self.path} is missing (build it: python -m models.build)")
        import onnxruntime as ort  # imported here: the pure modules must stay importable without it

        opts = ort.SessionOptions()
        # One thread: the nodes have 2 cores shared by every actor process.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise ModelLoadError(f"model file {self.path} is not a loadable ONNX model: {exc}") from exc
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

    def predict(self, features: np.ndarray) -> np.ndarray:
        batch = _as_batch(features)
        (out,) = self._session.run([self._output], {self._input: batch})
        return _checked(np.asarray(out, dtype=np.float32).reshape(-1), f"model {self.path.name}")


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


def load_detector(path: str | Path = DEFAULT_MODEL_PATH) -> OnnxDetector:
    """Load the ONNX detector or raise ``ModelLoadError`` (callers fall back to the heuristic)."""
    return OnnxDetector(path)
