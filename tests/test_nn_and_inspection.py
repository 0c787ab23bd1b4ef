"""Flax NNX modules, the toy model, and the gradient-inspection helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jax_dfl
from experiments.toy_regression import metrics as toy_metrics
from experiments.toy_regression import model as toy_model
from experiments.toy_regression import task as toy_task
from experiments.toy_regression import train as toy_train
from jax_dfl.histogram_losses import hl_gauss
from jax_dfl.inspection import FAMILIES, distribution_gradient_profile, gaussian_logits, gradient_profile
from jax_dfl.nn import DistributionHead, Integral
from tests import reference as ref


def test_distribution_head_shapes_and_jit():
    head = DistributionHead(12, num_outputs=4, num_bins=17, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3, 12))
    out = head(x)
    assert out.shape == (2, 3, 4, 17)
    np.testing.assert_allclose(nnx.jit(lambda h, x: h(x))(head, x), out, rtol=1e-6)
    with pytest.raises(ValueError, match="num_bins"):
        DistributionHead(12, num_outputs=4, num_bins=1, rngs=nnx.Rngs(0))


def test_integral_is_decode():
    logits = jax.random.normal(jax.random.key(0), (5, 4, 9))
    np.testing.assert_allclose(Integral()(logits), ref.decode(np.asarray(logits)), rtol=1e-5)
    assert not nnx.state(Integral(), nnx.Param)  # parameter-free


@pytest.mark.parametrize("loss", toy_model.LOSSES)
def test_toy_model_a_few_steps_reduce_the_loss(loss):
    task = toy_task.TaskConfig()
    model = toy_model.ToyRegressor(loss, task, hidden=32, depth=2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x, y = toy_task.make_batch(jax.random.key(1), 128, task)

    @nnx.jit
    def step(model, optimizer):
        objective = lambda m: toy_model.training_loss(loss, m(x), m.targets(y)).mean()
        value, grads = nnx.value_and_grad(objective)(model)
        optimizer.update(model, grads)
        return value

    first = float(step(model, optimizer))
    for _ in range(30):
        last = float(step(model, optimizer))
    # Cross-entropies cannot fall below their target's entropy: compare the excess over it.
    sigma = toy_model.hl_gauss_sigma(loss)
    floor = (
        0.0
        if sigma is None
        else float(toy_model.training_loss(loss, jnp.log(hl_gauss(y, 17, sigma=sigma)), y).mean())
    )
    assert last - floor < 0.7 * (first - floor)
    expected_shape = (128, task.num_bins) if toy_model.is_distribution(loss) else (128,)
    assert model(x).shape == expected_shape
    assert model.predict(x).shape == (128,)


def test_standardised_head_predicts_in_standard_units_and_decodes_to_bins():
    task = toy_task.TaskConfig()
    x, y = toy_task.make_batch(jax.random.key(2), 64, task)
    model = toy_model.ToyRegressor("l1_std", task, hidden=16, depth=1, rngs=nnx.Rngs(0))
    mean, sd = toy_task.target_moments(task)
    np.testing.assert_allclose(model.targets(y), (y - mean) / sd, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x), mean + sd * model(x), rtol=1e-6)
    # Both scalar heads start at the middle of the range: bias 8 bins, or 0 standard units.
    raw = toy_model.ToyRegressor("l1", task, hidden=16, depth=1, rngs=nnx.Rngs(0))
    assert float(raw.head.bias[0]) == mean and float(model.head.bias[0]) == 0.0
    # The same trunk initialisation for every head.
    np.testing.assert_array_equal(raw.trunk[0].kernel[...], model.trunk[0].kernel[...])


def test_toy_batches_are_seeded_and_span_the_range():
    task = toy_task.TaskConfig()
    x1, y1 = toy_task.make_batch(jax.random.key(3), 4096, task)
    x2, _ = toy_task.make_batch(jax.random.key(3), 4096, task)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (4096, task.signal_length)
    assert float(y1.min()) < 0.1 and float(y1.max()) > task.num_bins - 1.1


def test_training_is_reproducible_and_seeds_differ():
    task, train = toy_task.TaskConfig(), toy_train.TrainConfig(hidden=32, steps=40, batch_size=64)
    data = toy_task.make_batch(jax.random.key(9), 128, task)
    kwargs = dict(
        task=task, train_config=train, learning_rate=3e-3, eval_steps=[0, 20, 40], eval_data=data,
        test_inputs=data[0],
    )  # fmt: skip
    a = toy_train.train("dfl", [0, 1], **kwargs)
    b = toy_train.train("dfl", [0, 1], **kwargs)
    np.testing.assert_array_equal(a.curves, b.curves)
    np.testing.assert_array_equal(a.test_predictions, b.test_predictions)
    assert not np.array_equal(a.curves[0], a.curves[1])
    assert a.curves.shape == (2, 3) and a.steps == [0, 20, 40]


def test_steps_to_reach():
    assert toy_metrics.first_crossing([0, 10, 20], np.array([1.0, 0.5, 0.2]), 0.5) == 10
    assert toy_metrics.first_crossing([0, 10, 20], np.array([1.0, 0.5, 0.2]), 0.1) is None


# --- gradient inspection against closed forms ---------------------------------------------


def test_gradient_profile_closed_forms():
    errors = jnp.array([-3.0, -0.5, -0.01, 0.01, 0.5, 3.0])
    l1 = gradient_profile(lambda p, y: jnp.abs(p - y), errors, target=2.0)
    np.testing.assert_array_equal(l1, np.sign(errors))
    huber = gradient_profile(lambda p, y: optax.huber_loss(p, y, delta=1.0), errors, target=2.0)
    np.testing.assert_allclose(huber, np.clip(errors, -1, 1), rtol=1e-6)
    l2 = gradient_profile(lambda p, y: 0.5 * (p - y) ** 2, errors.reshape(2, 3), target=-1.0)
    np.testing.assert_allclose(l2, errors.reshape(2, 3), rtol=1e-5)


def test_distribution_profile_logit_gradient_is_softmax_minus_two_hot():
    errors = np.linspace(-4, 4, 9)
    out = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss, errors, target=7.6, num_bins=16, width=1.3
    )
    logits = np.asarray(gaussian_logits(7.6 + errors, 16, width=1.3))
    expected = ref.softmax(logits) - ref.two_hot(np.full(9, 7.6), 16)
    np.testing.assert_allclose(out.grad_logits, expected, atol=2e-6)
    np.testing.assert_allclose(out.grad_logits_norm, np.linalg.norm(expected, axis=-1), atol=2e-6)
    np.testing.assert_allclose(out.prediction, ref.decode(logits), atol=1e-5)


def test_distribution_profile_prediction_gradient_by_finite_differences():
    # Independent check: d loss / d prediction along the Gaussian family, by
    # central differences of the float64 reference in the location mu.
    target, width, h = 8.3, 1.0, 1e-5
    errors = np.array([-3.0, -1.2, 0.4, 2.5])
    out = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss, errors, target=target, num_bins=17, width=width
    )

    def family(mu):
        bins = np.arange(17.0)
        return -0.5 * ((bins - mu) / width) ** 2

    for err, got in zip(errors, np.asarray(out.grad_prediction), strict=True):
        mu = target + err
        d_loss = (ref.dfl(family(mu + h), target) - ref.dfl(family(mu - h), target)) / (2 * h)
        d_pred = (ref.decode(family(mu + h)) - ref.decode(family(mu - h))) / (2 * h)
        assert got == pytest.approx(d_loss / d_pred, rel=1e-3)
    # It grows with the error, unlike L1's constant +-1.
    assert abs(out.grad_prediction[0]) > 2 * abs(out.grad_prediction[2])
    assert np.all(np.sign(out.grad_prediction) == np.sign(errors))


@pytest.mark.parametrize("family", ["laplace", "skewed", "bimodal"])
def test_distribution_profile_other_families_by_finite_differences(family):
    # The same chain rule along other shapes, checked against central differences of the
    # float64 reference applied to the family's own logits (computed in float64 by NumPy).
    target, h = 8.3, 1e-4
    errors = np.array([-2.6, -0.7, 1.1, 3.4])  # away from the Laplace kinks at integers
    out = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss, errors, target=target, num_bins=17, family=family
    )

    def family_np(mu):
        with jax.enable_x64():
            return np.asarray(FAMILIES[family](jnp.float64(mu), 17))

    for err, got in zip(errors, np.asarray(out.grad_prediction), strict=True):
        mu = target + err
        d_loss = (ref.dfl(family_np(mu + h), target) - ref.dfl(family_np(mu - h), target)) / (2 * h)
        d_pred = (ref.decode(family_np(mu + h)) - ref.decode(family_np(mu - h))) / (2 * h)
        assert got == pytest.approx(d_loss / d_pred, rel=2e-3, abs=1e-4)


def test_laplace_family_gives_a_sign_like_gradient_and_families_by_callable():
    errors = np.array([-5.0, -3.0, -1.5, 1.5, 3.0, 5.0])
    out = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss, errors, target=8.3, num_bins=17, family="laplace"
    )
    # Unlike the Gaussian family's error / width^2: about constant magnitude, as L1's.
    assert np.all(np.abs(out.grad_prediction) > 0.6) and np.all(np.abs(out.grad_prediction) < 1.4)
    same = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss,
        errors,
        target=8.3,
        num_bins=17,
        family=lambda mu: -jnp.abs(jnp.arange(17.0) - mu),
    )
    np.testing.assert_allclose(same.grad_prediction, out.grad_prediction, rtol=1e-6)
    with pytest.raises(ValueError, match="family"):
        distribution_gradient_profile(
            jax_dfl.distribution_focal_loss, errors, target=8.3, num_bins=17, family="x"
        )


# --- the experiment's pieces: schedule, training with test curves, timing, noise floor ------


def test_log_eval_steps_resolve_ten_percent():
    steps = toy_train.log_eval_steps(6000, every=10, ratio=1.1)
    assert steps[0] == 0 and steps[-1] == 6000 and all(s % 10 == 0 for s in steps)
    gaps = np.diff(steps)
    assert np.all(gaps > 0) and np.all(gaps <= np.maximum(10, 0.1 * np.asarray(steps[1:])))
    assert len(steps) < 80
    with pytest.raises(ValueError):
        toy_train.log_eval_steps(55, every=10, ratio=1.1)


def test_new_arms_train_with_log_eval_steps_and_test_curves():
    task = toy_task.TaskConfig()
    train = toy_train.TrainConfig(hidden=32, steps=60, batch_size=64)
    val = toy_task.make_batch(jax.random.key(9), 128, task)
    test = toy_task.make_batch(jax.random.key(8), 128, task)
    # (Every arm's loss falls: test_toy_model_a_few_steps_reduce_the_loss. Here: the bookkeeping.)
    for loss in ("dist_l1",):
        out = toy_train.train(
            loss,
            [0],
            task=task,
            train_config=train,
            learning_rate=1e-2,
            eval_data=val,
            test_inputs=test[0],
            test_targets=test[1],
            eval_steps=[20, 60, 40],
        )
        assert out.steps == [0, 20, 40, 60]
        assert out.curves.shape == out.test_curves.shape == (1, 4)
        np.testing.assert_allclose(
            out.test_curves[0, -1], np.abs(out.test_predictions[0] - test[1]).mean(), rtol=1e-5
        )
        assert out.test_curves[0, -1] < 0.8 * out.test_curves[0, 0], loss  # it learns
    with pytest.raises(ValueError, match="unknown loss"):
        toy_model.check_loss("hl_gauss_-1")
    assert toy_model.hl_gauss_sigma("hl_gauss_1.5") == 1.5 and toy_model.hl_gauss_sigma("dfl") is None


def test_area_under_curve():
    # Trapezoids over the step: (10 * (1 + 0.5) / 2 + 20 * 0.5) / 30.
    assert toy_metrics.area_under_curve([0, 10, 30], np.array([1.0, 0.5, 0.5])) == pytest.approx(17.5 / 30)
    fast, slow = np.array([1.0, 0.2, 0.1, 0.1]), np.array([1.0, 0.6, 0.2, 0.09])
    assert toy_metrics.area_under_curve([0, 10, 100, 1000], fast) < toy_metrics.area_under_curve(
        [0, 10, 100, 1000], slow
    )


def test_bayes_floor_recovers_y_at_low_noise_and_beats_a_crude_estimate():
    low = toy_task.TaskConfig(noise_std=0.01)
    x, y = toy_task.make_batch(jax.random.key(3), 32, low)
    est = toy_task.bayes_estimates(x, low, batch=32)
    np.testing.assert_allclose(est.median, y, atol=0.02)
    np.testing.assert_allclose(est.mean, y, atol=0.02)
    assert est.mass_outside.max() < 1e-6
    # At the task's noise the median is near y too, and no worse than reading the
    # zero crossing of the signal (a simple estimator that ignores the model).
    task = toy_task.TaskConfig()
    x, y = toy_task.make_batch(jax.random.key(4), 64, task)
    est = toy_task.bayes_estimates(x, task, batch=64)
    mae = np.abs(est.median - np.asarray(y)).mean()
    positions = np.linspace(-0.5, 16.5, task.signal_length)
    signs = np.sign(np.asarray(x) * np.sign(np.asarray(x)[:, -1:]))
    crossing = np.array([positions[np.argmax(s > 0)] for s in signs])
    assert 0.02 < mae < 0.1 and mae < np.abs(crossing - np.asarray(y)).mean()
