"""Regression tests for the defects of the third adversarial sweep (issue 17)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
from jax_dfl import parallel

# --- 1. the assigner: a non-finite point never takes a top-k slot -------------------------------

POINTS = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
GT = jnp.array([[0.0, 0.0, 4.0, 4.0]])


def _assign(scores, pred_boxes=None, points=POINTS, gt=GT):
    return jax_dfl.task_aligned_assign(
        pred_boxes=jnp.tile(GT, (3, 1)) if pred_boxes is None else pred_boxes,
        pred_scores=scores,
        points=points,
        gt_boxes=gt,
        gt_labels=jnp.array([0]),
        gt_mask=jnp.array([True]),
        top_k=2,
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_score_is_background_and_frees_its_slot(bad):
    a = _assign(jnp.array([[bad], [0.8], [0.7]]))
    np.testing.assert_array_equal(a.foreground, [False, True, True])
    assert np.isfinite(a.scores).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_predicted_box_is_background_and_frees_its_slot(bad):
    boxes = jnp.tile(GT, (3, 1)).at[0, 2].set(bad)
    a = _assign(jnp.array([[0.9], [0.8], [0.7]]), pred_boxes=boxes)
    np.testing.assert_array_equal(a.foreground, [False, True, True])
    assert np.isfinite(a.scores).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gt_box_claims_no_point(bad):
    a = _assign(jnp.array([[0.9], [0.8], [0.7]]), gt=GT.at[0, 2].set(bad))
    assert not a.foreground.any()
    assert np.isfinite(a.scores).all()


def test_the_issues_example_under_jit_and_vmap():
    scores = jnp.array([[np.nan], [0.8], [0.7]])
    fg = jax.jit(lambda s: _assign(s).foreground)(scores)
    np.testing.assert_array_equal(fg, [False, True, True])
    batch = jax.vmap(lambda s: _assign(s).foreground)(jnp.stack([scores, scores[::-1]]))
    np.testing.assert_array_equal(batch, [[False, True, True], [True, True, False]])


# --- 2. entropy: finite gradient with -inf logits ---------------------------------------------


def test_entropy_gradient_is_finite_with_minus_inf_logits():
    x = jnp.log(jnp.array([0.0, 0.0, 0.2, 0.8, 0.0]))
    grad = jax.grad(lambda logits: jax_dfl.distribution_stats(logits, k=2).entropy)(x)
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[jnp.array([0, 1, 4])], 0)
    # Against float64 on the finite bins: d H / d x_i = -p_i (log p_i + H).
    p = np.array([0.2, 0.8])
    h = -np.sum(p * np.log(p))
    np.testing.assert_allclose(grad[2:4], -p * (np.log(p) + h), rtol=1e-5)


def test_entropy_of_nan_logits_stays_nan():
    assert np.isnan(jax_dfl.distribution_stats(jnp.array([np.nan, 0.0, 1.0]), k=1).entropy)


# --- 3. error messages name the hyper-parameter ------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, True, np.bool_(False), "0", None, 2, -3])
def test_batch_axis_must_be_an_int_axis(bad):
    mesh = parallel.data_mesh()
    with pytest.raises(ValueError, match="batch_axis"):
        parallel.batch_sharding(mesh, 2, batch_axis=bad)


def test_out_of_range_batch_axis_blames_batch_axis_not_the_leaf():
    mesh = parallel.data_mesh()
    for fn in (parallel.shard_batch, parallel.constrain_batch, parallel.shard_process_local):
        with pytest.raises(ValueError, match=r"batch_axis must be in \[-2, 2\)"):
            fn({"x": np.ones((4, 2), np.float32)}, mesh, batch_axis=3)


@pytest.mark.parametrize("strides", [jnp.array([8.0]), np.array([8]), (8,), [8.0]])
def test_anchor_points_take_any_1d_array_like_of_strides(strides):
    points, point_strides = jax_dfl.anchor_points([(2, 2)], strides)
    np.testing.assert_array_equal(point_strides, [8.0] * 4)
    assert points.shape == (4, 2)


@pytest.mark.parametrize("strides", [8, "8", [[8.0]], jnp.array([8.0, 16.0]), [8, 0]])
def test_anchor_points_bad_strides_name_strides(strides):
    with pytest.raises(ValueError, match="strides"):
        jax_dfl.anchor_points([(2, 2)], strides)
