"""One set of input rules, checked for every public function (``docs/conventions.md``, "Input rules").

Each public function is described once in ``CASES`` (its array arguments with
their kinds and a valid value, its hyper-parameters with bad values); the
tests below sweep every rule over every case. ``test_every_public_name_is_swept``
fails when a public name is added without a case here (or a dedicated test
named in ``ELSEWHERE``), so later functions cannot skip the rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
import jax_dfl.evaluation
import jax_dfl.inspection
import jax_dfl.nn
import jax_dfl.parallel
from jax_dfl import parallel
from tests.public_api import public_names

FLOATING, REAL, MASK, INTEGER = "floating", "real", "mask", "integer"
K = 9  # bins
N = 5  # rows


def _logits(shape):
    return lambda rng: rng.normal(scale=2.0, size=shape).astype(np.float32)


def _uniform(shape, low, high):
    return lambda rng: rng.uniform(low, high, size=shape).astype(np.float32)


def _boxes(shape):
    def make(rng):
        xy = rng.uniform(0, 50, size=(*shape, 2))
        wh = rng.uniform(1, 30, size=(*shape, 2))
        return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)

    return make


def _mask(shape):
    def make(rng):
        m = rng.random(shape) < 0.6
        m.flat[0], m.flat[-1] = True, False  # at least one of each
        return m

    return make


@dataclasses.dataclass(frozen=True)
class Arg:
    kind: str
    make: Callable[[np.random.Generator], np.ndarray]
    anchor: bool = False  # the argument whose shape the others must match
    keyword: bool = False  # passed by keyword (e.g. ``where``)


@dataclasses.dataclass(frozen=True)
class Case:
    fn: Callable
    args: dict[str, Arg]
    fixed: dict = dataclasses.field(default_factory=dict)  # hyper-parameters, passed by keyword
    bad_hyper: dict = dataclasses.field(default_factory=dict)  # name -> invalid values
    traced_hyper: tuple[str, ...] = ()  # numeric hyper-parameters that may be traced under jit
    nan_gives_finite: tuple[str, ...] = ()  # arguments whose NaN gives a documented finite result
    differentiable: tuple[str, ...] = ()  # arguments whose masked gradients must be 0
    mask_arg: str | None = None  # the argument that masks elements (default: "where" if present)
    returns_nothing: bool = False  # a checkify check: jit needs checkify around it

    @property
    def mask_name(self) -> str | None:
        return self.mask_arg or ("where" if "where" in self.args else None)

    def values(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: arg.make(rng) for name, arg in self.args.items()}

    def call(self, values: dict, **extra):
        positional = [values[n] for n, a in self.args.items() if not a.keyword]
        keywords = {n: values[n] for n, a in self.args.items() if a.keyword and n in values}
        return self.fn(*positional, **keywords, **(self.fixed | extra))


def _head_call(features):
    head = jax_dfl.nn.DistributionHead(6, num_outputs=4, num_bins=K, rngs=jax_dfl.nn.nnx.Rngs(0))
    return head(features)


def _head_init(**hyper):
    defaults = dict(in_features=6, num_outputs=4, num_bins=K)
    args = defaults | hyper
    return jax_dfl.nn.DistributionHead(
        args["in_features"],
        num_outputs=args["num_outputs"],
        num_bins=args["num_bins"],
        rngs=jax_dfl.nn.nnx.Rngs(0),
    )


def _profile(errors, **kw):
    # L2: its gradient carries a NaN error through (L1's sign-select would not).
    return jax_dfl.inspection.gradient_profile(lambda p, y: jnp.square(p - y), errors, **kw)


def _dist_profile(errors, **kw):
    return jax_dfl.inspection.distribution_gradient_profile(
        jax_dfl.distribution_focal_loss, errors, target=3.3, **kw
    )


LOGITS = Arg(FLOATING, _logits((N, 4, K)), anchor=True)
TARGETS = Arg(REAL, _uniform((N, 4), 0, K - 1))
WHERE = Arg(MASK, _mask((N, 4)), keyword=True)
BIN_HYPER = {"num_bins": [1, 0, -3, 2.5, "9"]}

CASES: dict[str, Case] = {
    "distribution_focal_loss": Case(
        jax_dfl.distribution_focal_loss,
        {"logits": LOGITS, "targets": TARGETS, "where": WHERE},
        differentiable=("logits", "targets"),
    ),
    "distribution_focal_kl": Case(
        jax_dfl.distribution_focal_kl,
        {"logits": LOGITS, "targets": TARGETS, "where": WHERE},
        differentiable=("logits", "targets"),
    ),
    "hl_gauss_loss": Case(
        jax_dfl.hl_gauss_loss,
        {"logits": LOGITS, "targets": TARGETS, "where": WHERE},
        fixed={"sigma": 0.75},
        bad_hyper={"sigma": [0.0, -1.0, float("nan"), float("inf")]},
        traced_hyper=("sigma",),
        differentiable=("logits", "targets"),
    ),
    "hl_gauss": Case(
        jax_dfl.hl_gauss,
        {"targets": Arg(REAL, _uniform((N, 4), 0, K - 1), anchor=True)},
        fixed={"num_bins": K, "sigma": 0.75},
        bad_hyper={**BIN_HYPER, "sigma": [0.0, -0.5]},
        traced_hyper=("sigma",),
    ),
    "two_hot": Case(
        jax_dfl.two_hot,
        {"targets": Arg(REAL, _uniform((N, 4), 0, K - 1), anchor=True)},
        fixed={"num_bins": K},
        bad_hyper=BIN_HYPER,
    ),
    "two_hot_entropy": Case(
        jax_dfl.two_hot_entropy,
        {"targets": Arg(REAL, _uniform((N, 4), 0, K - 1), anchor=True)},
        fixed={"num_bins": K},
        bad_hyper=BIN_HYPER,
    ),
    "decode": Case(jax_dfl.decode, {"logits": LOGITS}),
    "distribution_stats": Case(
        jax_dfl.distribution_stats, {"logits": LOGITS}, fixed={"k": 3}, bad_hyper={"k": [0, -1, K + 1, 1.5]}
    ),
    "quality_focal_loss": Case(
        jax_dfl.quality_focal_loss,
        {
            "logits": Arg(FLOATING, _logits((N, 7)), anchor=True),
            "targets": Arg(REAL, _uniform((N, 7), 0, 1)),
            "where": Arg(MASK, _mask((N, 7)), keyword=True),
        },
        fixed={"beta": 2.0},
        bad_hyper={"beta": [-1.0, float("nan"), "2"]},
        traced_hyper=("beta",),
        differentiable=("logits", "targets"),
    ),
    "distribution_distillation_loss": Case(
        jax_dfl.distribution_distillation_loss,
        {"student_logits": LOGITS, "teacher_logits": Arg(FLOATING, _logits((N, 4, K))), "where": WHERE},
        fixed={"temperature": 3.0},
        bad_hyper={"temperature": [0.0, -1.0, float("inf"), None]},
        traced_hyper=("temperature",),
        differentiable=("student_logits",),
    ),
    "bbox2distance": Case(
        jax_dfl.bbox2distance,
        {"points": Arg(REAL, _uniform((N, 2), 10, 40)), "boxes": Arg(REAL, _boxes((N,)), anchor=True)},
    ),
    "distance2bbox": Case(
        jax_dfl.distance2bbox,
        {
            "points": Arg(REAL, _uniform((N, 2), 10, 40)),
            "distances": Arg(REAL, _uniform((N, 4), 0, 9), anchor=True),
        },
    ),
    "box_iou": Case(
        jax_dfl.box_iou,
        {"boxes1": Arg(REAL, _boxes((N,)), anchor=True), "boxes2": Arg(REAL, _boxes((N,)))},
        bad_hyper={"eps": [0.0, -1e-7]},
        traced_hyper=("eps",),
    ),
    "giou_loss": Case(
        jax_dfl.giou_loss,
        {"pred": Arg(REAL, _boxes((N,)), anchor=True), "target": Arg(REAL, _boxes((N,)))},
        bad_hyper={"eps": [0.0, -1e-7]},
        traced_hyper=("eps",),
    ),
    "diou_loss": Case(
        jax_dfl.diou_loss,
        {"pred": Arg(REAL, _boxes((N,)), anchor=True), "target": Arg(REAL, _boxes((N,)))},
        bad_hyper={"eps": [0.0, -1e-7]},
        traced_hyper=("eps",),
    ),
    "ciou_loss": Case(
        jax_dfl.ciou_loss,
        {"pred": Arg(REAL, _boxes((N,)), anchor=True), "target": Arg(REAL, _boxes((N,)))},
        bad_hyper={"eps": [0.0, -1e-7]},
        traced_hyper=("eps",),
    ),
    "pairwise_iou": Case(
        # (N, 4) against (M, 4): no sizes to agree on, so both are anchors.
        jax_dfl.pairwise_iou,
        {"boxes1": Arg(REAL, _boxes((N,)), anchor=True), "boxes2": Arg(REAL, _boxes((3,)), anchor=True)},
        fixed={"kind": "ciou"},
        bad_hyper={"eps": [0.0, -1.0], "kind": ["iuo", None]},
        traced_hyper=("eps",),
    ),
    "task_aligned_assign": Case(
        jax_dfl.task_aligned_assign,
        {
            "pred_boxes": Arg(REAL, _boxes((40,)), keyword=True),
            "pred_scores": Arg(FLOATING, _uniform((40, 3), 0, 1), anchor=True, keyword=True),
            "points": Arg(REAL, _uniform((40, 2), 0, 60), keyword=True),
            "gt_boxes": Arg(REAL, _boxes((4,)), keyword=True),
            "gt_labels": Arg(INTEGER, lambda rng: rng.integers(0, 3, size=4).astype(np.int32), keyword=True),
            "gt_mask": Arg(MASK, _mask((4,)), keyword=True),
        },
        fixed={"top_k": 5},
        bad_hyper={
            "top_k": [0, 41, 2.5],
            "alpha": [-1.0, float("nan")],
            "beta": [-1.0],
            "candidate_eps": [0.0, -1.0],
            "metric_eps": [0.0, float("inf")],
            "iou_eps": [0.0],
            "norm_eps": [-1e-9],
            "iou_kind": ["giou", None],
            "top_k2": [0, 41, 2.5],
            "candidate_min_size": [0.0, -16.0, float("nan")],
        },
        traced_hyper=(
            "alpha",
            "beta",
            "candidate_eps",
            "metric_eps",
            "iou_eps",
            "norm_eps",
            "candidate_min_size",
        ),
        # Documented: a point whose score, predicted box or coordinates are not finite is
        # never a candidate (background); a non-finite gt box claims no point.
        nan_gives_finite=("pred_scores", "pred_boxes", "points"),
        mask_arg="gt_mask",
    ),
    "yolo_box_loss": Case(
        jax_dfl.yolo_box_loss,
        {
            "pred_logits": Arg(FLOATING, _logits((N, 4, K)), anchor=True),
            "pred_boxes": Arg(REAL, _boxes((N,))),
            "points": Arg(REAL, _uniform((N, 2), 10, 40)),
            "target_boxes": Arg(REAL, _boxes((N,))),
            "target_scores": Arg(FLOATING, _uniform((N, 3), 0, 1)),
            "foreground": Arg(MASK, _mask((N,))),
            "point_strides": Arg(REAL, _uniform((N,), 4, 16), keyword=True),
            "normalizer": Arg(REAL, lambda rng: np.array(2.5, np.float32), keyword=True),
        },
        bad_hyper={"max_foreground": [0, N + 1, 1.5]},
        differentiable=("pred_logits", "pred_boxes"),
        mask_arg="foreground",
    ),
    "validate_assignment_inputs": Case(
        # Returns nothing; its own rules are the dtype and shape ones (its checks: test_misuse_checks).
        jax_dfl.validate_assignment_inputs,
        {
            "pred_boxes": Arg(REAL, _boxes((2, 40)), anchor=True),
            "pred_scores": Arg(FLOATING, _uniform((2, 40, 3), 0, 1)),
        },
        returns_nothing=True,
    ),
    "validate_foreground": Case(
        lambda foreground, **kw: jax_dfl.validate_foreground(foreground, **kw),
        {"foreground": Arg(MASK, _mask((2, N)), anchor=True)},
        fixed={"max_foreground": N},
        bad_hyper={"max_foreground": [0, N + 1, 2.5]},
        returns_nothing=True,
    ),
    "non_max_suppression": Case(
        jax_dfl.non_max_suppression,
        {
            "boxes": Arg(REAL, _boxes((N,)), anchor=True),
            "scores": Arg(FLOATING, _uniform((N,), 0, 1)),
            "labels": Arg(INTEGER, lambda rng: rng.integers(0, 2, size=N).astype(np.int32), keyword=True),
            "where": Arg(MASK, _mask((N,)), keyword=True),
        },
        fixed={"iou_threshold": 0.5, "max_detections": 3, "score_threshold": 0.1},
        bad_hyper={
            "iou_threshold": [-0.1, 1.5, float("nan")],
            "max_detections": [0, 2.5, True],
            "pre_nms_top_k": [0, -1],
        },
        traced_hyper=("iou_threshold", "score_threshold"),
        # Documented: NaN boxes neither suppress nor are suppressed, NaN scores are never kept.
        nan_gives_finite=("boxes", "scores"),
    ),
    "decode_boxes": Case(
        jax_dfl.decode_boxes,
        {
            "logits": LOGITS,
            "points": Arg(REAL, _uniform((N, 2), 10, 40)),
            "point_strides": Arg(REAL, _uniform((N,), 4, 16)),
        },
    ),
    "validate_targets": Case(
        # Returns nothing; its own rules are the dtype and shape ones.
        lambda targets, where=None, **kw: jax_dfl.validate_targets(targets, K, where=where, **kw),
        {"targets": Arg(REAL, _uniform((N, 4), 0, K - 1), anchor=True), "where": WHERE},
        returns_nothing=True,
    ),
    "nn.DistributionHead": Case(
        _head_call,
        {"features": Arg(FLOATING, _logits((N, 6)), anchor=True)},
    ),
    "nn.Integral": Case(lambda logits: jax_dfl.nn.Integral()(logits), {"logits": LOGITS}),
    "inspection.gradient_profile": Case(_profile, {"errors": Arg(REAL, _uniform((N,), -3, 3), anchor=True)}),
    "inspection.distribution_gradient_profile": Case(
        _dist_profile,
        {"errors": Arg(REAL, _uniform((N,), -3, 3), anchor=True)},
        fixed={"num_bins": K, "width": 1.0},
        bad_hyper={**BIN_HYPER, "width": [0.0, -1.0]},
    ),
    **{
        f"inspection.{family}_logits": Case(
            lambda location, family=family, **kw: getattr(jax_dfl.inspection, f"{family}_logits")(
                location, K, **kw
            ),
            {"location": Arg(REAL, _uniform((N,), 0, K - 1), anchor=True)},
            fixed={"width": 1.0},
            bad_hyper={"width": [0.0, -2.0], **extra},
            traced_hyper=("width",),
        )
        for family, extra in [
            ("laplace", {}),
            ("skewed", {"skew": [0.0, -1.0]}),
            ("bimodal", {"weight": [0.0, 1.0, 1.5]}),
        ]
    },
    "inspection.gaussian_logits": Case(
        lambda location, **kw: jax_dfl.inspection.gaussian_logits(location, K, **kw),
        {"location": Arg(REAL, _uniform((N,), 0, K - 1), anchor=True)},
        fixed={"width": 1.0},
        bad_hyper={"width": [0.0, -2.0]},
    ),
    "box_range_counts": Case(
        jax_dfl.box_range_counts,
        {
            # 7 points (not 4, the gt slots: the masked test fills arrays whose rows match the mask).
            "points": Arg(REAL, _uniform((7, 2), 0, 60), anchor=True),
            "gt_boxes": Arg(REAL, _boxes((4,)), anchor=True),
            "gt_mask": Arg(MASK, _mask((4,))),
            "point_strides": Arg(REAL, lambda rng: np.array([4, 8, 4, 8, 4, 8, 4], np.float32), keyword=True),
        },
        fixed={"strides": (4, 8), "num_bins": K},
        bad_hyper={
            **BIN_HYPER,
            "strides": [(), (4, 4), (4, -8), 8, ("4", "x")],
            "size_edges": [(96, 32), (0,), (float("nan"),)],
            "max_histogram_distance": [0, 2.5],
            "candidate_min_size": [0.0, -16.0, float("nan")],
        },
        traced_hyper=("candidate_min_size",),
        # Documented: non-finite points, strides or valid boxes are not counted (integer counts)
        # and make max_distance NaN.
        mask_arg="gt_mask",
    ),
    "clipped_fraction": Case(
        jax_dfl.clipped_fraction,
        {
            "points": Arg(REAL, _uniform((N, 2), 10, 40)),
            "target_boxes": Arg(REAL, _boxes((N,)), anchor=True),
            "foreground": Arg(MASK, _mask((N,))),
            "point_strides": Arg(REAL, _uniform((N,), 1, 4), keyword=True),
        },
        fixed={"num_bins": K},
        bad_hyper=BIN_HYPER,
        mask_arg="foreground",
    ),
    "representable_range": Case(
        jax_dfl.representable_range,
        {"strides": Arg(REAL, _uniform((3,), 4, 32), anchor=True)},
        fixed={"num_bins": K},
        bad_hyper=BIN_HYPER,
    ),
}

# Public names tested by dedicated tests rather than the sweep (and why).
ELSEWHERE = {
    "DistributionStats": "a NamedTuple of outputs; test_distribution_stats_* checks its fields",
    "Assignment": "a NamedTuple of outputs",
    "anchor_points": "static Python arguments only: test_anchor_points_rules",
    "evaluation.coco_evaluate": "host-side NumPy (pycocotools): tests/test_evaluation.py checks its errors",
    "inspection.DistributionGradients": "a NamedTuple of outputs",
    "parallel.data_mesh": "test_parallel_rules",
    "parallel.batch_sharding": "test_parallel_rules",
    "parallel.shard_batch": "test_parallel_rules",
    "parallel.constrain_batch": "test_parallel_rules",
    "parallel.process_batch_slice": "test_parallel_rules",
    "parallel.shard_process_local": "test_parallel_rules",
    "parallel.replicate": "test_parallel_rules",
    "nn.DistributionHead.__init__": "test_head_hyper_parameters",
    "BoxRangeCounts": "a NamedTuple of outputs; tests/test_box_range.py checks its fields",
    "BoxRangeReport": "a NamedTuple of host-side results; tests/test_box_range.py checks it",
    "box_range_report": "host-side NumPy: tests/test_box_range.py checks its errors",
}


def _public(module, prefix: str) -> set[str]:
    return {prefix + n for n in public_names(module) if not n.isupper()}


def test_every_public_name_is_swept():
    public = _public(jax_dfl, "")
    modules = [
        (jax_dfl.nn, "nn."),
        (jax_dfl.inspection, "inspection."),
        (parallel, "parallel."),
        (jax_dfl.evaluation, "evaluation."),
    ]
    for module, prefix in modules:
        public |= _public(module, prefix)
    missing = public - set(CASES) - set(ELSEWHERE)
    assert not missing, f"public names without an input-rule case: {sorted(missing)}"


def _array_args(kind=None):
    return [
        pytest.param(name, arg_name, id=f"{name}-{arg_name}")
        for name, case in CASES.items()
        for arg_name, arg in case.args.items()
        if kind is None or arg.kind in kind
    ]


def _leaves(out):
    return [np.asarray(x) for x in jax.tree.leaves(out)]


@pytest.mark.parametrize("name", list(CASES))
def test_lists_numpy_and_jit_agree(name):
    case = CASES[name]
    values = case.values()
    as_numpy = _leaves(case.call(values))
    as_lists = _leaves(case.call({k: v.tolist() for k, v in values.items()}))
    as_jax = _leaves(case.call({k: jnp.asarray(v) for k, v in values.items()}))
    for a, b, c in zip(as_numpy, as_lists, as_jax, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-6)
    if not case.returns_nothing:  # a checkify check needs checkify around jit
        jitted = _leaves(jax.jit(lambda v: case.call(v))({k: jnp.asarray(v) for k, v in values.items()}))
        for a, b in zip(as_numpy, jitted, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


_BAD_DTYPES = {
    FLOATING: [np.int32, np.bool_, np.complex64],
    REAL: [np.bool_, np.complex64],
    MASK: [np.float32, np.int32],
    INTEGER: [np.float32, np.bool_],
}


@pytest.mark.parametrize(("name", "arg_name"), _array_args())
def test_bad_dtypes_are_a_type_error_naming_the_argument(name, arg_name):
    case = CASES[name]
    values = case.values()
    for dtype in _BAD_DTYPES[case.args[arg_name].kind]:
        bad = dict(values)
        bad[arg_name] = values[arg_name].astype(dtype)
        with pytest.raises(TypeError, match=arg_name):
            case.call(bad)
        with pytest.raises(TypeError, match=arg_name):
            jax.jit(lambda v, case=case: case.call(v))({k: jnp.asarray(v) for k, v in bad.items()})


def _shape_cases():
    return [
        pytest.param(name, arg_name, id=f"{name}-{arg_name}")
        for name, case in CASES.items()
        if len(case.args) > 1
        for arg_name, arg in case.args.items()
        if not arg.anchor
    ]


@pytest.mark.parametrize(("name", "arg_name"), _shape_cases())
def test_broadcastable_shapes_are_a_value_error_naming_the_argument(name, arg_name):
    case = CASES[name]
    values = case.values()
    value = values[arg_name]
    # Each of these would broadcast silently against the other arguments.
    shapes = (
        [(1,)]
        if value.ndim == 0
        else [(1, *value.shape), (1, *value.shape[1:]), (*value.shape[:-1], 1, value.shape[-1])]
    )
    for shape in shapes:
        if shape == value.shape:
            continue
        bad = dict(values)
        bad[arg_name] = np.broadcast_to(value.reshape(-1)[0], shape).astype(value.dtype)
        with pytest.raises(ValueError, match=rf"{arg_name}\.shape"):
            case.call(bad)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.returns_nothing])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_one_output_dtype_policy(name, dtype):
    """Half precision is computed in float32; every floating output is float32 for these inputs."""
    case = CASES[name]
    values = {
        k: (jnp.asarray(v, dtype) if case.args[k].kind in (FLOATING, REAL) and v.dtype.kind == "f" else v)
        for k, v in case.values().items()
    }
    for leaf in jax.tree.leaves(case.call(values)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, (name, leaf.dtype)


# Softmax logits over bins, where -inf is a bin of probability 0 (documented, finite). The sigmoid
# logits of quality_focal_loss and the student's logits are not: -inf there is a certain, wrong
# prediction, whose loss is +inf.
ZERO_PROBABILITY_BINS = {
    ("distribution_focal_loss", "logits"),
    ("distribution_focal_kl", "logits"),
    ("hl_gauss_loss", "logits"),
    ("decode", "logits"),
    ("distribution_stats", "logits"),
    ("distribution_distillation_loss", "teacher_logits"),
    ("decode_boxes", "logits"),
    ("nn.Integral", "logits"),
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize(("name", "arg_name"), _array_args({FLOATING, REAL}))
def test_non_finite_inputs_give_non_finite_outputs_not_a_confident_number(name, arg_name, bad):
    """The non-finite rule: NaN, +inf and -inf alike give a non-finite output (NaN, or an inf the
    arithmetic carries exactly), except where a finite result is documented: ``nan_gives_finite``
    arguments, and ``-inf`` logits, which are bins of probability 0."""
    case = CASES[name]
    if case.returns_nothing:
        pytest.skip("returns nothing; non-finite values are reported under checkify (test_losses)")
    values = case.values()
    if case.mask_name == "where":
        values.pop("where")
    values[arg_name] = values[arg_name].astype(np.float32)
    values[arg_name].flat[0] = bad
    leaves = _leaves(case.call(values))
    if arg_name in case.nan_gives_finite or (bad == -np.inf and (name, arg_name) in ZERO_PROBABILITY_BINS):
        assert all(np.isfinite(leaf).all() for leaf in leaves)
    else:
        assert not all(np.isfinite(leaf).all() for leaf in leaves), "non-finite input, all-finite output"
        if np.isnan(bad):
            assert any(np.isnan(leaf).any() for leaf in leaves), "NaN input gave no NaN"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.mask_name and not c.returns_nothing])
def test_masked_elements_give_zero_value_and_zero_gradient(name):
    """Garbage (NaN, +inf, -inf) in masked elements changes nothing: value and gradients."""
    case = CASES[name]
    clean = case.values()
    mask = clean[case.mask_name]
    dirty = dict(clean)
    for arg_name, arg in case.args.items():
        v = clean[arg_name]
        if arg.kind in (FLOATING, REAL) and v.shape[: mask.ndim] == mask.shape:
            masked = np.broadcast_to(~mask.reshape(mask.shape + (1,) * (v.ndim - mask.ndim)), v.shape)
            garbage = np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), v.shape)
            dirty[arg_name] = np.where(masked, garbage, v.astype(np.float32)).astype(np.float32)
    expected, got = _leaves(case.call(clean)), _leaves(case.call(dirty))
    for e, g in zip(expected, got, strict=True):
        if e.shape[: mask.ndim] == mask.shape and e.dtype.kind == "f":
            assert (g[~mask] == 0).all(), "masked elements must give 0"
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    for arg_name in case.differentiable:

        def total(x, values, arg_name=arg_name):
            return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(case.call(values | {arg_name: x})))

        grad = np.asarray(jax.grad(total)(jnp.asarray(dirty[arg_name], jnp.float32), dirty))
        grad_clean = np.asarray(jax.grad(total)(jnp.asarray(clean[arg_name], jnp.float32), clean))
        assert np.isfinite(grad).all(), arg_name
        assert (grad[~mask] == 0).all(), arg_name
        np.testing.assert_allclose(grad, grad_clean, rtol=1e-5, atol=1e-6)


def _hyper_cases():
    return [
        pytest.param(name, param, bad, id=f"{name}-{param}={bad!r}")
        for name, case in CASES.items()
        for param, bads in case.bad_hyper.items()
        for bad in bads
    ]


@pytest.mark.parametrize(("name", "param", "bad"), _hyper_cases())
def test_bad_hyper_parameters_are_a_value_error_naming_them(name, param, bad):
    case = CASES[name]
    with pytest.raises(ValueError, match=param):
        case.call(case.values(), **{param: bad})


@pytest.mark.parametrize(("name", "param"), [(n, p) for n, c in CASES.items() for p in c.traced_hyper])
def test_numeric_hyper_parameters_may_be_traced(name, param):
    case = CASES[name]
    values = case.values()
    concrete = case.fixed.get(param, 1e-7)
    expected = _leaves(case.call(values, **{param: concrete}))
    got = _leaves(jax.jit(lambda h: case.call(values, **{param: h}))(jnp.float32(concrete)))
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_head_hyper_parameters():
    for param, bad in [("in_features", 0), ("num_outputs", 0), ("num_outputs", 2.5), ("num_bins", 1)]:
        with pytest.raises(ValueError, match=param):
            _head_init(**{param: bad})
    with pytest.raises(ValueError, match=r"features"):
        _head_call(np.zeros((N, 5), np.float32))  # wrong feature size, named


def test_bin_values_rules():
    x, y = np.zeros((3, 4), np.float32), np.ones(3, np.float32)
    for bad in ([0, 1, np.inf, 5], [0, np.nan, 2, 3], [0, 2, 1, 3], [0, 1, 2]):
        with pytest.raises(ValueError, match="bin_values"):
            jax_dfl.distribution_focal_loss(x, y, bin_values=bad)
    with pytest.raises(TypeError, match="bin_values"):
        jax_dfl.decode(x, bin_values=np.array([0, 1, 2, 3], bool))


def test_parallel_rules():
    mesh = parallel.data_mesh()
    with pytest.raises(ValueError, match="devices"):
        parallel.data_mesh([])
    with pytest.raises(ValueError, match="batch_axis"):
        parallel.batch_sharding(mesh, 2, batch_axis=2)
    with pytest.raises(ValueError, match="ndim"):
        parallel.batch_sharding(mesh, 0)
    with pytest.raises(ValueError, match=r"tree\['x'\] is a scalar"):
        parallel.shard_batch({"x": np.float32(1)}, mesh)
    with pytest.raises(ValueError, match="global_batch_size"):
        parallel.process_batch_slice(-4, mesh)
    # NumPy leaves are accepted and placed.
    placed = parallel.shard_batch({"x": np.ones((4, 2), np.float32)}, mesh)
    assert isinstance(placed["x"], jax.Array)
    # Replicated and process-local arrays keep their values.
    np.testing.assert_array_equal(parallel.replicate(np.arange(3), mesh), np.arange(3))
    np.testing.assert_array_equal(parallel.shard_process_local(np.arange(4), mesh), np.arange(4))
    # constrain_batch inside jit keeps values.
    np.testing.assert_array_equal(
        jax.jit(lambda x: parallel.constrain_batch(x, mesh))(jnp.arange(4.0)), np.arange(4.0)
    )


def test_anchor_points_rules():
    points, strides = jax_dfl.anchor_points([(2, 3), (1, 2)], [8, 16])
    assert points.shape == (8, 2) and strides.shape == (8,) and points.dtype == jnp.float32
    for kwargs, param in [
        ({"feature_shapes": [(0, 2)], "strides": [8]}, "feature_shapes"),
        ({"feature_shapes": [(2.5, 2)], "strides": [8]}, "feature_shapes"),
        ({"feature_shapes": [(2, 2)], "strides": [8, 16]}, "strides"),
        ({"feature_shapes": [(2, 2)], "strides": [0]}, "strides"),
        ({"feature_shapes": [(2, 2)], "strides": [8], "offset": 1.0}, "offset"),
        ({"feature_shapes": [(2, 2)], "strides": [8], "offset": -0.5}, "offset"),
    ]:
        with pytest.raises(ValueError, match=param):
            jax_dfl.anchor_points(**kwargs)
