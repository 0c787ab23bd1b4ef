"""The shared checker (``jax_dfl._checks.arrays``): declarations, chex underneath, one wording.

The sweep over every public function is ``tests/test_input_rules.py``; here the checker itself,
that every function declares its arrays once through it, and that jitted calls with equal shapes
never retrace (``chex.assert_max_traces``).
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
import jax_dfl.evaluation
import jax_dfl.inspection
from jax_dfl import _checks
from tests.public_api import public_names


def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


# --- the checker ------------------------------------------------------------------------------


def test_arrays_are_returned_as_arrays_in_declared_order():
    a, b, none = _checks.arrays(
        "f", x=([[1.0, 2.0]], "float", "A 2"), y=(np.arange(1), "int", "A"), w=(None, "bool | None", "A")
    )
    assert isinstance(a, jax.Array) and a.shape == (1, 2) and b.dtype == jnp.int32 and none is None
    (host,) = _checks.arrays("f", x=([1, 2], "real", "N"), host=True)
    assert isinstance(host, np.ndarray)


def test_a_named_axis_binds_at_first_sight_and_must_agree_after():
    _checks.arrays("f", boxes=(z(5, 4), "real", "A 4"), points=(z(5, 2), "real", "A 2"))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "f: points.shape=(6, 2) does not match (A, 2): points.shape[0] is 6, "
            "but A is 5 from boxes.shape[0], boxes.shape=(5, 4)"
        ),
    ):
        _checks.arrays("f", boxes=(z(5, 4), "real", "A 4"), points=(z(6, 2), "real", "A 2"))


def test_a_literal_size_and_the_rank_are_named():
    with pytest.raises(
        ValueError, match=re.escape("f: boxes.shape=(5, 3) does not match (A, 4): boxes.shape[1] is 3, not 4")
    ):
        _checks.arrays("f", boxes=(z(5, 3), "real", "A 4"))
    with pytest.raises(
        ValueError,
        match=re.escape("f: boxes.shape=(5,) does not match (A, 4): it has 1 axis; (A, 4) needs 2"),
    ):
        _checks.arrays("f", boxes=(z(5), "real", "A 4"))
    with pytest.raises(
        ValueError, match=re.escape("x.shape=(2,) does not match (): it has 1 axis; () needs 0")
    ):
        _checks.arrays("f", x=(z(2), "real", ""))


def test_the_ellipsis_is_one_shared_batch_prefix_and_never_broadcasts():
    ok = _checks.arrays("f", logits=(z(2, 3, 9), "float", "... K"), targets=(z(2, 3), "real", "..."))
    assert [x.shape for x in ok] == [(2, 3, 9), (2, 3)]
    _checks.arrays("f", logits=(z(9), "float", "... K"), targets=(z(), "real", "..."))  # empty prefix
    for bad in [(2, 1), (1, 3), (3,), (2, 3, 1)]:
        with pytest.raises(
            ValueError, match=re.escape(f"targets.shape={bad}") + r".*logits.shape=\(2, 3, 9\)"
        ):
            _checks.arrays("f", logits=(z(2, 3, 9), "float", "... K"), targets=(z(*bad), "real", "..."))


def test_the_one_documented_broadcast_points_shared_by_a_batch():
    for boxes in [(5, 4), (3, 5, 4), (2, 3, 5, 4)]:
        _checks.arrays("f", points=(z(5, 2), "real", "*P 2"), boxes=(z(*boxes), "real", "... *P 4"))
    # A size-1 axis never stretches, and the points' axes must be the boxes' trailing ones.
    for points, boxes in [((1, 2), (5, 4)), ((5, 2), (3, 4, 4)), ((3, 5, 2), (5, 4))]:
        with pytest.raises(ValueError, match=r"boxes.shape=.*from points.shape"):
            _checks.arrays("f", points=(z(*points), "real", "*P 2"), boxes=(z(*boxes), "real", "... *P 4"))


def test_dims_from_hyper_parameters_minimums_and_alternatives():
    with pytest.raises(
        ValueError, match=re.escape("b.shape[0] is 3, but num_bins is 4 from the num_bins argument")
    ):
        _checks.arrays("f", b=(z(3), "real", "num_bins"), dims={"num_bins": 4})
    with pytest.raises(ValueError, match=re.escape("logits.shape[1] is 1, but num_bins must be >= 2")):
        _checks.arrays("f", logits=(z(3, 1), "float", "... num_bins"), minimum={"num_bins": 2})
    scalar_or_per_point = ("", "*P")
    for strides in [(), (5,)]:
        _checks.arrays("f", p=(z(5, 2), "real", "*P 2"), s=(z(*strides), "real", scalar_or_per_point))
    with pytest.raises(ValueError, match=re.escape("s.shape=(5, 1) does not match () or (*P)")):
        _checks.arrays("f", p=(z(5, 2), "real", "*P 2"), s=(z(5, 1), "real", scalar_or_per_point))


@pytest.mark.parametrize(
    ("kind", "good", "bad", "wording"),
    [
        (
            "float",
            [np.float32, jnp.bfloat16, np.float16],
            [np.int32, np.bool_, np.complex64],
            "floating point",
        ),
        (
            "real",
            [np.float32, np.int32, np.uint8],
            [np.bool_, np.complex64],
            r"real numbers \(float or int\)",
        ),
        ("int", [np.int32, np.int8, np.uint32], [np.float32, np.bool_], "integers"),
        ("bool", [np.bool_], [np.float32, np.int32], "a boolean mask"),
    ],
)
def test_dtype_kinds_are_a_type_error_in_one_wording(kind, good, bad, wording):
    for dtype in good:
        _checks.arrays("f", x=(jnp.zeros(2, dtype), kind, "N"))
    for dtype in bad:
        with pytest.raises(TypeError, match=rf"^f: x must be {wording}; got dtype {np.dtype(dtype).name}$"):
            _checks.arrays("f", x=(np.zeros(2, dtype), kind, "N"))
    with pytest.raises(TypeError, match=rf"^f: x must be {wording}; got None$"):  # only if optional
        _checks.arrays("f", x=(None, kind, "N"))


def test_errors_come_at_trace_time_under_jit():
    def f(x, y):
        return _checks.arrays("f", x=(x, "float", "A"), y=(y, "float", "A"))[0]

    with pytest.raises(ValueError, match=r"y.shape=\(3,\).*x.shape=\(2,\)"):
        jax.jit(f)(z(2), z(3))
    with pytest.raises(TypeError, match="x must be floating point"):
        jax.jit(f)(z(2, dtype=np.int32), z(2))


def test_chex_decides_and_chex_disable_asserts_does_not_turn_the_rules_off():
    # The checker calls the checks chex wraps (their __wrapped__), so the library's input rules
    # hold whatever chex's global switch says (see _checks._always_on).
    assert _checks._assert_shape is chex.assert_shape.__wrapped__
    assert _checks._assert_type is chex.assert_type.__wrapped__
    chex.disable_asserts()
    try:
        with pytest.raises(ValueError, match=r"targets\.shape"):
            jax_dfl.distribution_focal_loss(z(8, 17), z(8, 1))
        with pytest.raises(TypeError, match="logits"):
            jax_dfl.decode(z(3, 4, dtype=np.int32))
    finally:
        chex.enable_asserts()


# --- declared once per function, and nowhere else -----------------------------------------------

FUNCTIONS = {
    **{
        name: getattr(jax_dfl, name)
        for name in public_names(jax_dfl)
        if inspect.isfunction(getattr(jax_dfl, name))
    },
    "coco_evaluate": jax_dfl.evaluation.coco_evaluate,
    "gradient_profile": jax_dfl.inspection.gradient_profile,
    "distribution_gradient_profile": jax_dfl.inspection.distribution_gradient_profile,
    **{
        f"{f}_logits": getattr(jax_dfl.inspection, f"{f}_logits")
        for f in ("gaussian", "laplace", "skewed", "bimodal")
    },
}
STATIC_ONLY = {"anchor_points"}  # Python ints and floats only: hyper-parameter checks, no arrays


@pytest.mark.parametrize("name", sorted(set(FUNCTIONS) - STATIC_ONLY))
def test_each_public_function_declares_its_arrays_once(name):
    source = inspect.getsource(inspect.unwrap(FUNCTIONS[name]))
    declarations = re.findall(rf'_checks\.arrays\(\s*"{name}"|_family_grid\(\s*"{name}"', source)
    assert len(declarations) == 1, f"{name}: {len(declarations)} declarations"


# Checks that stay outside the declarations, and why (a raise naming a shape or a dtype).
NOT_DECLARATIONS = {
    # A pytree leaf of any shape: the rule is divisibility by the mesh size, not a declared shape.
    ("parallel.py", "_check_divisible"),
}


def test_no_module_words_its_own_shape_or_dtype_errors():
    """Every shape and dtype error of an array argument comes from ``_checks.arrays``."""
    package = pathlib.Path(jax_dfl.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        if path.name == "_checks.py":
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    text = ast.unparse(node.exc)
                    if re.search(r"\.shape|dtype|\.ndim|must have shape", text):
                        found.append((path.name, function.name))
                if isinstance(node, ast.Call) and ast.unparse(node.func) in {
                    "jnp.issubdtype",
                    "np.issubdtype",
                }:
                    found.append((path.name, function.name))
    assert set(found) <= NOT_DECLARATIONS, sorted(set(found) - NOT_DECLARATIONS)


# --- equal shapes never retrace ---------------------------------------------------------------


def _never_retraces(fn, make_args, *, calls=3):
    """``fn`` jitted, called with fresh arrays of equal shapes: traced once (chex counts)."""
    chex.clear_trace_counter()
    counted = chex.assert_max_traces(fn, n=1)
    jitted = jax.jit(counted)
    for seed in range(calls):
        jax.block_until_ready(jitted(*make_args(np.random.default_rng(seed))))
    return jitted


def _dfl_args(rng):
    return rng.normal(size=(6, 4, 9)).astype(np.float32), rng.uniform(0, 8, (6, 4)).astype(np.float32)


def test_max_traces_counts_so_a_new_shape_is_a_retrace():
    jitted = _never_retraces(lambda x, y: jax_dfl.distribution_focal_loss(x, y), _dfl_args)
    with pytest.raises(AssertionError, match="traced > 1 times"):
        jitted(np.zeros((7, 4, 9), np.float32), np.zeros((7, 4), np.float32))


def test_dfl_loss_and_decode_never_retrace_for_equal_shapes():
    _never_retraces(lambda x, y: jax_dfl.distribution_focal_loss(x, y, where=y > 1).sum(), _dfl_args)
    _never_retraces(lambda x: jax_dfl.decode(x), lambda rng: _dfl_args(rng)[:1])
    _never_retraces(lambda x, y: jax_dfl.hl_gauss_loss(x, y, sigma=0.75), _dfl_args)


def _boxes(rng, n):
    xy = rng.uniform(0, 50, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 20, (n, 2))], -1).astype(np.float32)


def test_yolo_box_loss_never_retraces_for_equal_shapes():
    def args(rng):
        a = 12
        return (
            rng.normal(size=(a, 4, 9)).astype(np.float32),
            _boxes(rng, a),
            rng.uniform(10, 40, (a, 2)).astype(np.float32),
            _boxes(rng, a),
            rng.uniform(0, 1, (a, 3)).astype(np.float32),
            rng.random(a) < 0.5,
            np.full(a, 8.0, np.float32),
            np.float32(3.0),
        )

    def loss(logits, pred, points, target, scores, fg, strides, normalizer):
        return jax_dfl.yolo_box_loss(
            logits, pred, points, target, scores, fg, point_strides=strides, normalizer=normalizer
        )

    _never_retraces(loss, args)


def test_assigner_and_nms_never_retrace_for_equal_shapes():
    def assign_args(rng):
        return (
            _boxes(rng, 30),
            rng.uniform(0, 1, (30, 3)).astype(np.float32),
            rng.uniform(0, 60, (30, 2)).astype(np.float32),
            _boxes(rng, 4),
            rng.integers(0, 3, 4).astype(np.int32),
            np.array([True, True, True, False]),
        )

    def assign(pred_boxes, pred_scores, points, gt_boxes, gt_labels, gt_mask):
        return jax_dfl.task_aligned_assign(
            pred_boxes=pred_boxes,
            pred_scores=pred_scores,
            points=points,
            gt_boxes=gt_boxes,
            gt_labels=gt_labels,
            gt_mask=gt_mask,
            top_k=5,
        )

    _never_retraces(assign, assign_args)

    def nms_args(rng):
        return _boxes(rng, 20), rng.uniform(0, 1, 20).astype(np.float32), rng.random(20) < 0.8

    _never_retraces(
        lambda b, s, w: jax_dfl.non_max_suppression(b, s, where=w, iou_threshold=0.5, max_detections=5),
        nms_args,
    )
