"""The window features as an ONNX graph, composed with the classifier: raw windows in, leak probability out.

``python -m models.features_graph [--classifier models/gas_detector.onnx]`` writes
``gas_detector_windows.onnx`` next to the classifier (and its entry in the model card) from the committed
classifier, without retraining; ``models.build`` calls the same ``write_windows_model`` after training.
The output is deterministic: the same classifier gives the same bytes (a test rebuilds and compares).

Why: ``window_features`` is ~40 numpy calls per chunk; in the graph onnxruntime does the same arithmetic in
C++ in the same ``run`` as the trees. What it does NOT do is sort: onnxruntime's TopK costs ~2 us per row of 40
(5x numpy's sort; ``compose(..., sort_in_graph=True)`` builds that variant for ``bench.features_graph``), so
``graph_feeds`` sorts in numpy and the graph takes the sorted values as an input. Measured (thread CPU time,
256 windows, ``python -m bench.features_graph``): the features part of the graph ~1.1 us/window, the numpy
feeds ~1.0 (0.8 of it the three sorts), ``window_features`` ~2.9; end to end ``predict_windows`` is only
~3-13 % cheaper than ``predict(window_features(...))`` because onnxruntime's per-node cost (~1.5-3 us, ~75
nodes) is about numpy's per-call cost and the sorts stay.

The graph computes ``models.features._features_complete`` (rows WITHOUT NaN; rows with dropouts stay on the
Python NaN-aware path, see ``OnnxDetector.predict_windows``) in float64, with the same definitions and, where
it matters, the same floating-point operations: the quantiles interpolate the sorted values as
``_sorted_quantile`` does, the ``_SUMS`` matrix product gives both slopes' sums, ``_slog`` uses an accurate
``log1p``; then ``nan_to_num`` and the cast to float32 as ``window_features`` does, and the classifier's own
nodes, unchanged. Equal to the numpy features within a few ulps (tests/unit/models/test_features_graph.py).
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

from models.features import _SLOG_COLUMNS, _SUMS, FEATURE_NAMES, HEAD, N_FEATURES, WINDOW

# Names shared with the runtime (models.detector): the classifier's input/output, the composed model's.
INPUT_NAME = "features"
OUTPUT_NAME = "leak_probability"
WINDOWS_INPUT = "windows"  # float64 [N, WINDOW], rows without NaN/inf
STEPS_INPUT = "abs_steps"  # float64 [N, WINDOW - 1]: |windows[:, 1:] - windows[:, :-1]|
SORTED_INPUT = "sorted"  # float64 [SORTED_ROWS, N], one COLUMN per window: see SORTED_*
FEATURES_OUTPUT = "window_features"  # float64 [N, F], for tests and diagnostics
FEATURES_F32 = "fg_features_f32"  # what the classifier is fed
TAIL = WINDOW - HEAD
# Rows of the sorted input: each window's head, tail and head's absolute steps, each sorted ascending.
SORTED_HEAD = (0, HEAD)
SORTED_TAIL = (HEAD, WINDOW)
SORTED_STEPS = (WINDOW, WINDOW + HEAD - 1)
SORTED_ROWS = WINDOW + HEAD - 1
INPUTS = (WINDOWS_INPUT, STEPS_INPUT, SORTED_INPUT)

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
        """``log1p(a)`` for ``a >= 0`` to about an ulp: ``log(u) - ((u - 1) - a) / u`` with ``u = 1 + a`` (the
        second term corrects the rounding of ``u``; where ``u`` rounds to 1 it is ``a`` itself).
        ``Log(1 + a)`` alone loses the digits of a small ``a`` (relative error ~1e-16 / a)."""
        u = self.op("Add", a, self.scalar(1.0))
        rounding = self.op("Sub", self.op("Sub", u, self.scalar(1.0)), a)
        return self.op("Sub", self.op("Log", u), self.op("Div", rounding, u), hint="log1p")


def graph_feeds(windows: np.ndarray) -> dict[str, np.ndarray]:
    """The composed model's inputs for ``[N, WINDOW]`` windows without NaN/inf (``INPUTS``): the windows, their
    absolute steps, and their head, tail and head steps sorted, transposed to one column per window. numpy,
    8 calls for the whole chunk, does the two things onnxruntime is slow at (measured, 256 windows):

    - sorting: its TopK costs ~2 us per row of 40, 5x numpy's sort and more than all the other features;
    - transposing float64: its Transpose of [256, 99] costs ~350 us, numpy's copy ~10 us. The graph works on
      the sorted values one row per rank and one column per window, so each per-window value is a [1, N] row
      and broadcasting runs in a few long spans (one short span per window costs ~50 ns each: 10x)."""
    arr = np.ascontiguousarray(windows, dtype=np.float64)
    steps = arr[:, 1:] - arr[:, :-1]
    np.abs(steps, out=steps)
    ordered = np.empty((SORTED_ROWS, arr.shape[0]))
    # np.sort on a row-major block, then a transposed copy: sorting the strided columns in place is slower.
    ordered[SORTED_HEAD[0] : SORTED_HEAD[1]] = np.sort(arr[:, :HEAD], axis=1).T
    ordered[SORTED_TAIL[0] : SORTED_TAIL[1]] = np.sort(arr[:, HEAD:], axis=1).T
    ordered[SORTED_STEPS[0] : SORTED_STEPS[1]] = np.sort(steps[:, : HEAD - 1], axis=1).T
    return {WINDOWS_INPUT: arr, STEPS_INPUT: steps, SORTED_INPUT: ordered}


def _quantile_weights(n: int, q: float) -> tuple[int, int, float, float]:
    """``models.features._sorted_quantile``'s interpolation: (lo, hi, weight of lo, weight of hi)."""
    pos = q * max(n - 1, 0)
    lo = math.floor(pos)
    frac = pos - lo
    return lo, min(lo + 1, max(n - 1, 0)), 1.0 - frac, frac


def _prepare_in_graph(g: _Graph, x: str) -> tuple[str, str]:
    """``graph_feeds``' steps and sorted values inside the graph, with TopK and Transpose: exact, but ~5x
    slower than numpy (kept for the benchmark that shows why the runtime prepares them in numpy)."""
    i64 = np.int64

    def cols(t: str, lo: int, hi: int) -> str:
        return g.op("Slice", t, g.const([lo], "lo", i64), g.const([hi], "hi", i64), g.const([1], "ax", i64))

    steps = g.op("Abs", g.op("Sub", cols(x, 1, WINDOW), cols(x, 0, WINDOW - 1)), hint="abs_steps")
    blocks = []
    for block, n in (
        (cols(x, 0, HEAD), HEAD),
        (cols(x, HEAD, WINDOW), TAIL),
        (cols(steps, 0, HEAD - 1), HEAD - 1),
    ):
        values, _ = g.multi("TopK", block, g.const([n], "k", i64), n_out=2, hint="topk", largest=0, sorted=1)
        blocks.append(values)
    return steps, g.op("Transpose", g.op("Concat", *blocks, axis=1), perm=[1, 0], hint="sorted")


# The features in the order the graph computes them: the _slog ones first, so one slice takes them.
_ORDER = [*_SLOG_COLUMNS, *(j for j in range(N_FEATURES) if j not in _SLOG_COLUMNS)]


def features_graph(sort_in_graph: bool = False) -> tuple[list[Any], list[Any], list[str]]:
    """Nodes and constants mapping ``INPUTS`` (``graph_feeds``; with ``sort_in_graph`` only ``WINDOWS_INPUT``,
    the rest computed inside) to ``FEATURES_OUTPUT`` (float64 [N, F]) and ``FEATURES_F32`` (float32, what the
    classifier is fed). Returns ``(nodes, initializers, input names)``.

    Per-window values are [1, N] rows (one column per window), constants [1, 1] or [k, 1]: onnxruntime then
    broadcasts in a few long spans instead of one short span per window (measured: [256, 7] * [7] costs 10x
    [7, 256] * [7, 1]). Reductions over a window's readings run on the [N, k] inputs (ReduceMax over the last
    axis: 6 us; over the first: 40 us)."""
    g = _Graph()
    x = WINDOWS_INPUT
    steps, s = _prepare_in_graph(g, x) if sort_in_graph else (STEPS_INPUT, SORTED_INPUT)
    i64 = np.int64
    # The order statistics the quantiles read, interpolated as _sorted_quantile does, in the same operations
    # (ordered[lo] * (1 - frac) + ordered[hi] * frac), so they are bit-identical (a matrix product may fuse
    # them, and rise = tail_med - level cancels what is left).
    # The noise scale 1.4826 * median step / sqrt(2) rides on the steps' weights (one rounding less than
    # _features_complete's two products: equal within an ulp).
    noise_scale = 1.4826 / math.sqrt(2.0)
    wanted = [
        (SORTED_HEAD, HEAD, 0.5, 1.0),  # level
        (SORTED_TAIL, TAIL, 0.5, 1.0),  # tail median
        (SORTED_TAIL, TAIL, 0.2, 1.0),  # tail 20th percentile
        (SORTED_STEPS, HEAD - 1, 0.5, noise_scale),  # the head's median absolute step, as a noise scale
        (SORTED_TAIL, TAIL, 1.0, 1.0),  # tail max
    ]
    lows, highs, w_lows, w_highs = zip(
        *(
            (start + lo, start + hi, [w_lo * scale], [w_hi * scale])
            for (start, _), n, q, scale in wanted
            for lo, hi, w_lo, w_hi in [_quantile_weights(n, q)]
        ),
        strict=True,
    )
    quantiles = g.op(
        "Add",
        g.op("Mul", g.op("Gather", s, g.const(lows, "lows", i64), axis=0), g.const(w_lows)),
        g.op("Mul", g.op("Gather", s, g.const(highs, "highs", i64), axis=0), g.const(w_highs)),
        hint="quantiles",
    )
    level, tail_med, tail_low, step_noise, tail_max = g.split(quantiles, [1] * len(wanted), "q")
    size = g.op("Add", g.op("Abs", level), g.scalar(1e-6), hint="size")
    noise = g.op(
        "Max", step_noise, g.op("Mul", size, g.scalar(0.01)), hint="noise"
    )  # no NaN here: Max is fmax
    # Steps: the largest, and the unchanged ones over the head's own and the tail's own steps.
    row = g.const([1, -1], "row", i64)
    max_step = g.op("Reshape", g.op("ReduceMax", steps, axes=[1], keepdims=1), row, hint="max_step")  # [1, N]
    span = np.zeros((WINDOW - 1, 2))
    span[: HEAD - 1, 0], span[HEAD:, 1] = 1.0, 1.0
    unchanged = g.op("Cast", g.op("Equal", steps, g.scalar(0.0)), to=11)
    flat = g.op("Transpose", g.op("MatMul", unchanged, g.const(span)), perm=[1, 0], hint="flat")  # [2, N]
    # Slopes from _SUMS' sums (rows: head sum, tail sum, head x-weighted, tail x-weighted; tail sum again).
    sums = g.op("Transpose", g.op("MatMul", x, g.const(_SUMS[:, [0, 2, 1, 3, 2]])), perm=[1, 0], hint="sums")
    sy, sxy, tail_sum = g.split(sums, [2, 2, 1], "s")
    n = np.array([[HEAD], [TAIL]], dtype=np.float64)
    sx = np.array([[np.arange(k, dtype=np.float64).sum()] for k in (HEAD, TAIL)])
    sxx = np.array([[(np.arange(k, dtype=np.float64) ** 2).sum()] for k in (HEAD, TAIL)])
    slope = g.op("Sub", g.op("Mul", g.const(n), sxy), g.op("Mul", g.const(sx), sy))
    slope_n = g.op(
        "Mul", g.op("Div", slope, g.const(n * sxx - sx * sx)), g.const(n), hint="slope_n"
    )  # [2, N]
    tail = g.rows(s, *SORTED_TAIL, hint="tail")  # sorted: the sum and the count below ignore the order
    deviation = g.op("Sub", tail, g.op("Div", tail_sum, g.scalar(float(TAIL))))
    tail_var = g.op("Div", g.column_sum(g.op("Mul", deviation, deviation), "ss"), g.scalar(float(TAIL)))
    bar = g.op("Add", level, g.op("Mul", g.scalar(3.0), noise), hint="bar")
    above = g.column_sum(g.op("Cast", g.op("Greater", tail, bar), to=11), "above")
    rise = g.op("Sub", tail_med, level, hint="rise")
    # Numerators and denominators of the 13 features, one row each, in _ORDER.
    numerators = g.op(
        "Concat",
        rise,  # rise_rel
        rise,  # rise_z
        g.op("Sub", tail_low, level),  # tail_low_rise_z
        max_step,  # max_step_z
        g.op("Sub", tail_max, tail_med),  # tail_peak_z
        slope_n,  # head_slope_rel, tail_slope_rel
        above,  # tail_above_frac
        flat,  # head_flat_frac, tail_flat_frac
        g.op("Mul", flat, g.scalar(0.0), hint="missing"),  # no missing readings on this path
        g.op("Sqrt", tail_var, hint="tail_std"),  # tail_cv
        axis=0,
    )
    assert _ORDER == [0, 1, 2, 4, 5, 6, 7, 3, 8, 9, 10, 11, 12]  # the rows above
    # denominators = select @ [size; noise; |tail_med| + 1e-6] + constants (exact: one 1 per row of select).
    by_name = {
        "rise_rel": (0, 0.0),
        "rise_z": (1, 0.0),
        "tail_low_rise_z": (1, 0.0),
        "tail_above_frac": (None, TAIL),
        "max_step_z": (1, 0.0),
        "tail_peak_z": (1, 0.0),
        "head_slope_rel": (0, 0.0),
        "tail_slope_rel": (0, 0.0),
        "head_flat_frac": (None, HEAD - 1.0),
        "tail_flat_frac": (None, TAIL - 1.0),
        "head_missing_frac": (None, 1.0),
        "tail_missing_frac": (None, 1.0),
        "tail_cv": (2, 0.0),
    }
    select = np.zeros((N_FEATURES, 3))
    constants = np.zeros((N_FEATURES, 1))
    for i, j in enumerate(_ORDER):
        source, constant = by_name[FEATURE_NAMES[j]]
        if source is not None:
            select[i, source] = 1.0
        constants[i, 0] = constant
    cv_den = g.op("Add", g.op("Abs", tail_med), g.scalar(1e-6))
    per_window = g.op("Concat", size, noise, cv_den, axis=0)
    denominators = g.op("Add", g.op("MatMul", g.const(select), per_window), g.const(constants))
    to_slog, plain = g.split(
        g.op("Div", numerators, denominators, hint="raw"), [len(_SLOG_COLUMNS), 6], "raw"
    )
    # _slog: sign(x) * log1p(|x|), on its 7 rows only (Log is the dearest op here).
    slog = g.op("Mul", g.op("Sign", to_slog), g.log1p(g.op("Abs", to_slog)), hint="slog")
    inverse = [_ORDER.index(j) for j in range(N_FEATURES)]
    feats = g.op("Gather", g.op("Concat", slog, plain, axis=0), g.const(inverse, "order", i64), axis=0)
    # window_features' nan_to_num(nan=0, posinf=0, neginf=0): x - x is 0 only for a finite x.
    finite = g.op("Equal", g.op("Sub", feats, feats), g.scalar(0.0))
    feats = g.op("Where", finite, feats, g.scalar(0.0))
    g.op("Transpose", feats, perm=[1, 0], out=FEATURES_OUTPUT)
    g.op("Cast", FEATURES_OUTPUT, to=1, out=FEATURES_F32)
    return g.nodes, g.initializers, [x] if sort_in_graph else list(INPUTS)


def features_model(sort_in_graph: bool = False) -> Any:
    """The features alone: ``INPUTS`` (or ``WINDOWS_INPUT`` alone with ``sort_in_graph``) ->
    ``FEATURES_OUTPUT`` float64 [N, F] and ``FEATURES_F32`` float32 [N, F]."""
    from onnx import TensorProto, helper

    nodes, inits, inputs = features_graph(sort_in_graph)
    shapes: dict[str, list[str | int]] = {
        WINDOWS_INPUT: ["N", WINDOW],
        STEPS_INPUT: ["N", WINDOW - 1],
        SORTED_INPUT: [SORTED_ROWS, "N"],
    }
    graph = helper.make_graph(
        nodes,
        "window_features",
        [helper.make_tensor_value_info(name, TensorProto.DOUBLE, shapes[name]) for name in inputs],
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
    """The composed model's bytes: the features graph + the classifier (unchanged); inputs ``INPUTS``
    (``graph_feeds`` of the windows), outputs ``OUTPUT_NAME`` [N] and
    ``FEATURES_OUTPUT`` [N, F]. Its metadata is the classifier's plus ``classifier_sha256``, which the loader
    checks against the classifier file next to it. ``sort_in_graph``: input ``WINDOWS_INPUT`` alone, the
    rest computed with TopK and Transpose inside the graph (benchmark only)."""
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
    meta["inputs"] = f"models.features_graph.graph_feeds(windows float64 [N, {WINDOW}] without NaN/inf)"
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
        "inputs": {
            WINDOWS_INPUT: {"shape": ["N", WINDOW], "dtype": "float64", "value": "windows without NaN/inf"},
            STEPS_INPUT: {"shape": ["N", WINDOW - 1], "dtype": "float64", "value": "their absolute steps"},
            SORTED_INPUT: {
                "shape": [SORTED_ROWS, "N"],
                "dtype": "float64",
                "value": "head, tail and head steps of each window sorted, one column per window",
            },
            "made_by": "models.features_graph.graph_feeds(windows)",
        },
        "outputs": {OUTPUT_NAME: ["N"], FEATURES_OUTPUT: ["N", N_FEATURES]},
        "built_by": "python -m models.build; alone, from the classifier without retraining: python -m models.features_graph",
    }


def card_markdown(windows_path: Path, classifier_name: str) -> str:
    entry = card_entry(windows_path)
    return f"""{CARD_SECTION}
`{entry["file"]}` ({entry["bytes"]} bytes, sha256 `{str(entry["sha256"])[:16]}…`): the same classifier with the
features computed inside the graph (`models/features_graph.py`). Inputs from `graph_feeds(windows)`:
`{WINDOWS_INPUT}` float64 [N, {WINDOW}] (windows without missing readings), `{STEPS_INPUT}` [N, {WINDOW - 1}]
and `{SORTED_INPUT}` [{SORTED_ROWS}, N] (head, tail and head steps sorted, one column per window: numpy
sorts and transposes ~5-30x faster than onnxruntime's TopK and Transpose); output `{OUTPUT_NAME}` float32 [N] (and `{FEATURES_OUTPUT}` float64 [N, {N_FEATURES}]).
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
