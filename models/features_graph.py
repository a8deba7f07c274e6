"""The window features as an ONNX graph, composed with the classifier: raw windows in, leak probability out.

``python -m models.features_graph [--classifier models/gas_detector.onnx]`` writes
``gas_detector_windows.onnx`` next to the classifier (and its entry in the model card) from the committed
classifier, without retraining; ``models.build`` calls the same ``write_windows_model`` after training.
The output is deterministic: the same classifier gives the same bytes (a test rebuilds and compares).

Why: ``window_features`` is ~40 numpy calls per chunk, and their fixed cost (not the arithmetic) is what
dominates at a few hundred windows, more than the classifier itself. In the graph onnxruntime does the same
arithmetic in C++ in the same ``run`` as the trees.

The graph computes ``models.features._features_complete`` (rows WITHOUT NaN; rows with dropouts stay on the
Python NaN-aware path, see ``OnnxDetector.predict_windows``) in float64, with the same definitions and, where
it matters, the same floating-point operations: TopK (ascending) for the sorted values the quantiles
interpolate, the ``_SUMS`` matrix product for both slopes' sums, and an accurate ``log1p`` for ``_slog``.
Then ``nan_to_num`` and the cast to float32 as ``window_features`` does, and the classifier's own nodes.
Build-time only: needs the ``model`` extra (onnx); the runtime loads the file with onnxruntime alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.features import _SLOG_COLUMNS, _SUMS, HEAD, N_FEATURES, WINDOW

# Names shared with the runtime (models.detector): the classifier's input/output, the composed model's.
INPUT_NAME = "features"
OUTPUT_NAME = "leak_probability"
PREPARED_INPUT = "prepared"  # float64 [PREPARED_ROWS, N]: prepare_windows(windows), one column per window
FEATURES_OUTPUT = "window_features"  # float64 [N, F], for tests and diagnostics
FEATURES_F32 = "fg_features_f32"  # what the classifier is fed
WINDOWS_INPUT = "windows"  # the benchmark-only TopK variant's input: float64 [N, WINDOW]
TAIL = WINDOW - HEAD
# Rows of the prepared input: the window's readings, then its head, tail and head's absolute steps, sorted.
ROWS_WINDOW = (0, WINDOW)
ROWS_HEAD = (WINDOW, WINDOW + HEAD)
ROWS_TAIL = (WINDOW + HEAD, 2 * WINDOW)
ROWS_STEPS = (2 * WINDOW, 2 * WINDOW + HEAD - 1)
PREPARED_ROWS = 2 * WINDOW + HEAD - 1

# The classifier's opsets (models.build.OPSET; the committed file imports ai.onnx.ml 1): the features part
# needs only the default domain.
OPSET_DEFAULT = 17
IR_VERSION = 8
PRODUCER = "garrison.models.features_graph"
CARD_SECTION = "## Windows model"


class _Graph:
    """Tiny builder: every node and constant gets a deterministic ``fg_``-prefixed name, so nothing collides
    with the classifier's ``gd_`` names when the two graphs are merged."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"fg_{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = np.float64) -> str:
        name = self._name(hint)
        self.initializers.append(self._numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str = "", out: str | None = None, **attrs: Any) -> str:
        name = out or self._name(hint or op_type.lower())
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def multi(self, op_type: str, *inputs: str, n_out: int, hint: str, **attrs: Any) -> list[str]:
        outs = [self._name(hint) for _ in range(n_out)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs

    def scalar(self, value: float) -> str:
        """A [1, 1] constant: broadcast against a [1, N] row or a [k, N] block it is a fast path in
        onnxruntime (a rank-0 constant against [N, 1] is not: ~50 ns per element)."""
        return self.const([[value]])

    def rows(self, x: str, lo: int, hi: int, hint: str = "rows") -> str:
        """``x[lo:hi]`` (axis 0: the layout is transposed, one row per reading or feature)."""
        i64 = np.int64
        starts, ends, axes = (
            self.const([lo], "lo", i64),
            self.const([hi], "hi", i64),
            self.const([0], "ax", i64),
        )
        return self.op("Slice", x, starts, ends, axes, hint=hint)

    def split(self, x: str, sizes: Sequence[int], hint: str) -> list[str]:
        return self.multi(
            "Split", x, self.const(list(sizes), "sizes", np.int64), n_out=len(sizes), hint=hint, axis=0
        )

    def column_sum(self, x: str, hint: str) -> str:
        """Sum over axis 0 (the readings of each window) -> [1, N]."""
        return self.op("ReduceSum", x, self.const([0], "ax", np.int64), hint=hint, keepdims=1)

    def log1p(self, a: str) -> str:
        """``log1p(a)`` for ``a >= 0`` to a few ulps: ``log(u) * (a / (u - 1))`` with ``u = 1 + a`` (the
        rounding of ``u`` cancels out), and ``a`` itself where ``u`` rounds to 1. ``Log(1 + a)`` alone
        loses the digits of a small ``a`` (relative error ~1e-16 / a)."""
        u = self.op("Add", a, self.const(1.0))
        d = self.op("Sub", u, self.const(1.0))
        tiny = self.op("Equal", d, self.const(0.0))
        ratio = self.op(
            "Mul", self.op("Log", u), self.op("Div", a, self.op("Where", tiny, self.const(1.0), d))
        )
        return self.op("Where", tiny, a, ratio, hint="log1p")


def prepare_windows(windows: np.ndarray) -> np.ndarray:
    """The composed model's input for ``[N, WINDOW]`` windows without NaN/inf: ``[PREPARED_ROWS, N]`` float64,
    one COLUMN per window: its readings, then its head, its tail and its head's absolute steps, each sorted
    (``ROWS_*``). Computed in numpy, 7 calls for the whole chunk, because:

    - sorting: onnxruntime's TopK costs ~2 us per row of 40, 5x numpy's sort and more than all the other
      features together;
    - transposing: in the graph's layout every per-window value is a [1, N] row, so onnxruntime broadcasts in
      a few long spans (one short span per window costs ~50 ns each: 10x), and numpy transposes a chunk
      in ~10 us where onnxruntime's Transpose of float64 takes ~10x that."""
    arr = np.asarray(windows, dtype=np.float64)
    out = np.empty((PREPARED_ROWS, arr.shape[0]))
    out[ROWS_WINDOW[0] : ROWS_WINDOW[1]] = arr.T
    # np.sort on a row-major block, then a transposed copy: sorting the strided columns in place is slower.
    out[ROWS_HEAD[0] : ROWS_HEAD[1]] = np.sort(arr[:, :HEAD], axis=1).T
    out[ROWS_TAIL[0] : ROWS_TAIL[1]] = np.sort(arr[:, HEAD:], axis=1).T
    steps = np.abs(arr[:, 1:HEAD] - arr[:, : HEAD - 1])
    steps.sort(axis=1)
    out[ROWS_STEPS[0] : ROWS_STEPS[1]] = steps.T
    return out


def _quantile_weights(n: int, q: float) -> tuple[int, int, float, float]:
    """``models.features._sorted_quantile``'s interpolation: (lo, hi, weight of lo, weight of hi)."""
    pos = q * max(n - 1, 0)
    lo = math.floor(pos)
    frac = pos - lo
    return lo, min(lo + 1, max(n - 1, 0)), 1.0 - frac, frac


def _prepare_in_graph(g: _Graph, x: str) -> str:
    """``prepare_windows`` inside the graph, TopK sorting and Transpose: exact, but TopK costs ~2 us per row
    of 40 in onnxruntime, 5x numpy's sort (kept for the benchmark that shows why the runtime prepares in
    numpy)."""
    i64 = np.int64

    def cols(lo: int, hi: int) -> str:
        return g.op("Slice", x, g.const([lo], "lo", i64), g.const([hi], "hi", i64), g.const([1], "ax", i64))

    steps = g.op("Abs", g.op("Sub", cols(1, HEAD), cols(0, HEAD - 1)))
    blocks = [x]
    for block, n in ((cols(0, HEAD), HEAD), (cols(HEAD, WINDOW), TAIL), (steps, HEAD - 1)):
        values, _ = g.multi("TopK", block, g.const([n], "k", i64), n_out=2, hint="topk", largest=0, sorted=1)
        blocks.append(values)
    return g.op("Transpose", g.op("Concat", *blocks, axis=1), perm=[1, 0], hint="prepared")


def features_graph(sort_in_graph: bool = False) -> tuple[list[Any], list[Any], list[str]]:
    """Nodes and constants mapping ``PREPARED_INPUT`` (``prepare_windows``; with ``sort_in_graph`` the graph
    prepares it from ``WINDOWS_INPUT`` [N, WINDOW] itself) to ``FEATURES_OUTPUT`` (float64 [N, F]) and
    ``FEATURES_F32`` (float32, what the classifier is fed). Returns ``(nodes, initializers, input names)``.

    The work is done TRANSPOSED, one row per reading (or per feature) and one column per window: every
    per-window value is a [1, N] row, constants are [1, 1] or [k, 1], and onnxruntime's broadcasting then runs
    a few long spans instead of one short span per window (measured: a [256, 7] * [7] product costs 10x a
    [7, 256] * [7, 1] one)."""
    g = _Graph()
    p = _prepare_in_graph(g, WINDOWS_INPUT) if sort_in_graph else PREPARED_INPUT
    x = g.rows(p, *ROWS_WINDOW, hint="x")  # [WINDOW, N]
    # The order statistics the quantiles read, interpolated as _sorted_quantile does, in the same operations
    # (ordered[lo] * (1 - frac) + ordered[hi] * frac), so they are bit-identical (a matrix product may fuse
    # them, and rise = tail_med - level cancels what is left).
    wanted = [
        (ROWS_HEAD, HEAD, 0.5),  # level
        (ROWS_TAIL, TAIL, 0.5),  # tail median
        (ROWS_TAIL, TAIL, 0.2),  # tail 20th percentile
        (ROWS_STEPS, HEAD - 1, 0.5),  # median absolute step of the head
        (ROWS_TAIL, TAIL, 1.0),  # tail max
    ]
    lows, highs, w_lows, w_highs = zip(
        *(
            (start + lo, start + hi, [w_lo], [w_hi])
            for (start, _), n, q in wanted
            for lo, hi, w_lo, w_hi in [_quantile_weights(n, q)]
        ),
        strict=True,
    )
    quantiles = g.op(
        "Add",
        g.op("Mul", g.op("Gather", p, g.const(lows, "lows", np.int64), axis=0), g.const(w_lows)),
        g.op("Mul", g.op("Gather", p, g.const(highs, "highs", np.int64), axis=0), g.const(w_highs)),
        hint="quantiles",
    )
    level, tail_med, tail_low, step_med, tail_max = g.split(quantiles, [1] * len(wanted), "q")
    size = g.op("Add", g.op("Abs", level), g.scalar(1e-6), hint="size")
    noise = g.op("Div", g.op("Mul", step_med, g.scalar(1.4826)), g.scalar(math.sqrt(2.0)))
    noise = g.op("Max", noise, g.op("Mul", size, g.scalar(0.01)), hint="noise")  # no NaN here: Max is fmax
    # Steps: unchanged consecutive readings over the head's own and the tail's own steps; the largest step.
    steps = g.op("Sub", g.rows(x, 1, WINDOW), g.rows(x, 0, WINDOW - 1), hint="steps")  # [WINDOW-1, N]
    span = np.zeros((2, WINDOW - 1))
    span[0, : HEAD - 1], span[1, HEAD:] = 1.0, 1.0
    unchanged = g.op("Cast", g.op("Equal", steps, g.scalar(0.0)), to=11)
    flat = g.op("MatMul", g.const(span), unchanged, hint="flat")  # [2, N]
    max_step = g.op("ReduceMax", g.op("Abs", steps), axes=[0], keepdims=1, hint="max_step")
    # Slopes from _SUMS' sums (rows: head sum, tail sum, head x-weighted, tail x-weighted; tail sum again).
    sums = g.op("MatMul", g.const(_SUMS[:, [0, 2, 1, 3, 2]].T), x, hint="sums")
    sy, sxy, tail_sum = g.split(sums, [2, 2, 1], "s")
    n = np.array([[HEAD], [TAIL]], dtype=np.float64)
    sx = np.array([[np.arange(k, dtype=np.float64).sum()] for k in (HEAD, TAIL)])
    sxx = np.array([[(np.arange(k, dtype=np.float64) ** 2).sum()] for k in (HEAD, TAIL)])
    slope = g.op("Sub", g.op("Mul", g.const(n), sxy), g.op("Mul", g.const(sx), sy))
    slope_n = g.op(
        "Mul", g.op("Div", slope, g.const(n * sxx - sx * sx)), g.const(n), hint="slope_n"
    )  # [2, N]
    tail = g.rows(p, *ROWS_TAIL, hint="tail")  # sorted: the sum and the count below ignore the order
    deviation = g.op("Sub", tail, g.op("Div", tail_sum, g.scalar(float(TAIL))))
    tail_var = g.op("Div", g.column_sum(g.op("Mul", deviation, deviation), "ss"), g.scalar(float(TAIL)))
    bar = g.op("Add", level, g.op("Mul", g.scalar(3.0), noise), hint="bar")
    above = g.column_sum(g.op("Cast", g.op("Greater", tail, bar), to=11), "above")
    rise = g.op("Sub", tail_med, level, hint="rise")
    # Numerators and denominators of the 13 features, one row each in FEATURE_NAMES order.
    numerators = g.op(
        "Concat",
        rise,
        rise,
        g.op("Sub", tail_low, level),
        above,
        max_step,
        g.op("Sub", tail_max, tail_med),
        slope_n,
        flat,
        g.op("Mul", flat, g.scalar(0.0), hint="missing"),  # no missing readings on this path
        g.op("Sqrt", tail_var, hint="tail_std"),
        axis=0,
    )
    # denominators = select @ [size; noise; |tail_med| + 1e-6] + constants (exact: one 1 per row of select).
    select = np.zeros((N_FEATURES, 3))
    select[[0, 6, 7], 0] = 1.0
    select[[1, 2, 4, 5], 1] = 1.0
    select[12, 2] = 1.0
    constants = np.zeros((N_FEATURES, 1))
    constants[[3, 8, 9, 10, 11], 0] = [TAIL, HEAD - 1, TAIL - 1, 1.0, 1.0]
    cv_den = g.op("Add", g.op("Abs", tail_med), g.scalar(1e-6))
    per_window = g.op("Concat", size, noise, cv_den, axis=0)
    denominators = g.op("Add", g.op("MatMul", g.const(select), per_window), g.const(constants))
    raw = g.op("Div", numerators, denominators, hint="raw")  # [F, N]
    # _slog on its rows: sign(x) * log1p(|x|).
    slog = g.op("Mul", g.op("Sign", raw), g.log1p(g.op("Abs", raw)), hint="slog")
    mask = np.zeros((N_FEATURES, 1), dtype=bool)
    mask[_SLOG_COLUMNS] = True
    feats = g.op("Where", g.const(mask, "slog_mask", np.bool_), slog, raw, hint="feats")
    # window_features' nan_to_num(nan=0, posinf=0, neginf=0): x - x is 0 only for a finite x.
    finite = g.op("Equal", g.op("Sub", feats, feats), g.scalar(0.0))
    feats = g.op("Where", finite, feats, g.scalar(0.0))
    g.op("Transpose", feats, perm=[1, 0], out=FEATURES_OUTPUT)
    g.op("Cast", FEATURES_OUTPUT, to=1, out=FEATURES_F32)
    return g.nodes, g.initializers, [WINDOWS_INPUT] if sort_in_graph else [PREPARED_INPUT]


def features_model(sort_in_graph: bool = False) -> Any:
    """The features alone: ``PREPARED_INPUT`` [PREPARED_ROWS, N] (or ``WINDOWS_INPUT`` [N, WINDOW] with
    ``sort_in_graph``) -> ``FEATURES_OUTPUT`` float64 [N, F] and ``FEATURES_F32`` float32 [N, F]."""
    from onnx import TensorProto, helper

    nodes, inits, _ = features_graph(sort_in_graph)
    shape: list[str | int] = ["N", WINDOW] if sort_in_graph else [PREPARED_ROWS, "N"]
    graph = helper.make_graph(
        nodes,
        "window_features",
        [
            helper.make_tensor_value_info(
                WINDOWS_INPUT if sort_in_graph else PREPARED_INPUT, TensorProto.DOUBLE, shape
            )
        ],
        [
            helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.DOUBLE, ["N", N_FEATURES]),
            helper.make_tensor_value_info(FEATURES_F32, TensorProto.FLOAT, ["N", N_FEATURES]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_DEFAULT)])
    model.ir_version = IR_VERSION
    return model


def compose(classifier_blob: bytes, sort_in_graph: bool = False) -> bytes:
    """The composed model's bytes: the features graph + the classifier (unchanged); input ``PREPARED_INPUT``
    (``prepare_windows`` of the windows), outputs ``OUTPUT_NAME`` [N] and
    ``FEATURES_OUTPUT`` [N, F]. Its metadata is the classifier's plus ``classifier_sha256``, which the loader
    checks against the classifier file next to it. ``sort_in_graph``: input ``WINDOWS_INPUT`` [N, WINDOW],
    prepared by TopK and Transpose inside the graph (benchmark only)."""
    import onnx
    from onnx import compose as onnx_compose
    from onnx import helper

    classifier = onnx.load_from_string(classifier_blob)
    if [i.name for i in classifier.graph.input] != [INPUT_NAME]:
        names = [i.name for i in classifier.graph.input]
        raise ValueError(f"the classifier's inputs are {names}, expected [{INPUT_NAME!r}]")
    features = features_model(sort_in_graph)
    features.ir_version = classifier.ir_version
    merged = onnx_compose.merge_models(
        features,
        classifier,
        io_map=[(FEATURES_F32, INPUT_NAME)],
        outputs=[OUTPUT_NAME, FEATURES_OUTPUT],
        name="gas_leak_detector_windows",
        doc_string="Leak probability per raw window (features computed in the graph); see MODEL_CARD.md",
        producer_name=PRODUCER,
        producer_version=classifier.producer_version,
    )
    meta = {p.key: p.value for p in classifier.metadata_props}
    meta["classifier_sha256"] = hashlib.sha256(classifier_blob).hexdigest()
    meta["input"] = (
        f"{PREPARED_INPUT} float64 [{PREPARED_ROWS}, N] = models.features_graph.prepare_windows(windows), "
        f"windows float64 [N, {WINDOW}] without NaN/inf"
    )
    del merged.metadata_props[:]
    helper.set_model_props(merged, dict(sorted(meta.items())))
    onnx.checker.check_model(merged, full_check=True)
    return bytes(merged.SerializeToString())


def windows_model_path(classifier_path: str | Path) -> Path:
    """Where the composed model of a classifier lives: ``x.onnx`` -> ``x_windows.onnx``."""
    path = Path(classifier_path)
    return path.with_name(f"{path.stem}_windows{path.suffix}")


def _default_classifier() -> Path:
    from models.detector import DEFAULT_MODEL_PATH  # not at import time: models.detector imports this module

    return DEFAULT_MODEL_PATH


def write_windows_model(classifier_path: Path | None = None) -> Path:
    """Write the composed model next to the classifier (default: the committed one) and return its path."""
    classifier_path = classifier_path or _default_classifier()
    out = windows_model_path(classifier_path)
    out.write_bytes(compose(Path(classifier_path).read_bytes()))
    return out


def card_entry(windows_path: Path) -> dict[str, object]:
    blob = windows_path.read_bytes()
    return {
        "file": windows_path.name,
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "input": {
            "name": PREPARED_INPUT,
            "shape": [PREPARED_ROWS, "N"],
            "dtype": "float64",
            "value": "models.features_graph.prepare_windows(windows [N, WINDOW] without NaN/inf)",
        },
        "outputs": {OUTPUT_NAME: ["N"], FEATURES_OUTPUT: ["N", N_FEATURES]},
        "built_by": "python -m models.build; alone, from the classifier without retraining: python -m models.features_graph",
    }


def card_markdown(windows_path: Path, classifier_name: str) -> str:
    entry = card_entry(windows_path)
    return f"""{CARD_SECTION}
`{entry["file"]}` ({entry["bytes"]} bytes, sha256 `{str(entry["sha256"])[:16]}…`): the same classifier with the
features computed inside the graph (`models/features_graph.py`). Input `{PREPARED_INPUT}` float64
[{PREPARED_ROWS}, N] = `prepare_windows(windows)`: one column per window without missing readings, its
readings then its head, tail and head steps sorted (sorting and transposing are ~5-10x cheaper in numpy
than in onnxruntime); output `{OUTPUT_NAME}` float32 [N] (and `{FEATURES_OUTPUT}` float64 [N, {N_FEATURES}]).
Windows with missing readings take the Python features and the classifier. Rebuilt from
`{classifier_name}` without retraining by `python -m models.features_graph`; the runtime refuses it if it
was built from another classifier.
"""


def update_card(windows_path: Path) -> None:
    """Add or replace the windows model's entry in the model card files next to it (if they exist)."""
    folder = windows_path.parent
    card_json = folder / "model_card.json"
    classifier_name = _default_classifier().name
    if card_json.is_file():
        card = json.loads(card_json.read_text())
        card["windows_model"] = card_entry(windows_path)
        card_json.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        classifier_name = str(card.get("file", classifier_name))
    card_md = folder / "MODEL_CARD.md"
    if card_md.is_file():
        head = card_md.read_text().split("\n" + CARD_SECTION, 1)[0].rstrip("\n")
        card_md.write_text(head + "\n\n" + card_markdown(windows_path, classifier_name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.features_graph", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--classifier", type=Path, default=None, help="default: models/gas_detector.onnx")
    args = parser.parse_args(argv)
    classifier = args.classifier or _default_classifier()
    out = write_windows_model(classifier)
    update_card(out)
    print(f"wrote {out} ({out.stat().st_size} bytes) from {classifier}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
