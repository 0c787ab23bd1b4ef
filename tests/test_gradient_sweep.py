"""The public losses' gradients under ``jax.jit`` against float64 central differences of an
independent NumPy reference, over a seeded grid of shapes, scales and hyper-parameters (the sign
and size of each partial derivative, not only a value): DFL (logits and targets, uniform and
non-uniform bins), DFL-KL (logits: by design the same as DFL's), HL-Gauss (logits), QFL (logits
and quality targets), distillation (student), decode, IoU/GIoU/DIoU (both boxes) and CIoU
(prediction, alpha frozen). Covered elsewhere: ``yolo_box_loss`` (``test_detection_blocks``), the
HL-Gauss target gradient (``test_hl_gauss``), the teacher's zero gradient and the ``where`` masks
(``test_gfl_family``, ``test_input_rules``).

The references are the ones the value tests use (``tests/reference*.py``, ``ref_hl_gauss``), so a
gradient can be wrong only if it is not the derivative of the value those tests check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_dfl
from tests import reference as ref
from tests import reference_detection as ref_det
from tests.test_hl_gauss import ref_hl_gauss

H = 1e-6  # central-difference step, float64


def numerical_grad(f, x: np.ndarray) -> np.ndarray:
    """d sum(f(x)) / dx by float64 central differences, one element at a time."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += H
        down[i] -= H
        g[i] = (np.sum(f(up)) - np.sum(f(down))) / (2 * H)
    return g


def jax_grad(f, *args, argnum: int = 0) -> np.ndarray:
    """d sum(f(*args)) / d args[argnum] in float32, under jit."""
    args = [jnp.asarray(a, jnp.float32) for a in args]
    return np.asarray(jax.jit(jax.grad(lambda *a: f(*a).sum(), argnums=argnum))(*args), np.float64)


def assert_close(got, expected):
    # float32 forward and backward against float64: 2e-3 relative, and 1e-4 of the largest entry
    # absolute (float32 rounding of the small entries; no floor, so small entries count too).
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4 * np.abs(expected).max() + 1e-9)


def inside_bins(rng, n: int, num_bins: int) -> np.ndarray:
    """Targets inside (0, num_bins - 1), at least 0.05 from a bin (DFL's kinks in the target)."""
    y = rng.uniform(0, num_bins - 1, n)
    frac = y - np.floor(y)
    return np.floor(y) + np.clip(frac, 0.05, 0.95)


@pytest.mark.parametrize("num_bins", [2, 5, 17])
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_dfl_and_dfl_kl_logit_gradients(num_bins, scale):
    rng = np.random.default_rng(num_bins * 10 + int(scale))
    logits = rng.normal(scale=scale, size=(3, 4, num_bins))
    y = inside_bins(rng, 12, num_bins).reshape(3, 4)
    expected = numerical_grad(lambda x: ref.dfl(x, y), logits)
    assert_close(jax_grad(jax_dfl.distribution_focal_loss, logits, y), expected)
    # DFL minus the two-hot entropy: the entropy is a constant of the target, same logit gradient.
    kl = numerical_grad(lambda x: ref.dfl(x, y) - ref.entropy(ref.two_hot(y, num_bins)), logits)
    assert_close(jax_grad(jax_dfl.distribution_focal_kl, logits, y), kl)


@pytest.mark.parametrize("num_bins", [3, 9])
def test_dfl_target_gradient(num_bins):
    rng = np.random.default_rng(num_bins)
    logits = rng.normal(scale=2.0, size=(10, num_bins))
    y = inside_bins(rng, 10, num_bins)
    expected = numerical_grad(lambda t: ref.dfl(logits, t), y)
    assert_close(jax_grad(jax_dfl.distribution_focal_loss, logits, y, argnum=1), expected)


def test_dfl_gradients_with_non_uniform_bins():
    values = np.array([0.0, 0.5, 1.5, 4.0, 10.0])
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 5))
    y = np.array([0.1, 0.9, 2.0, 3.3, 7.0, 9.5])

    def reference(x, t):
        return ref.cross_entropy(ref.two_hot_values(t, values), x)

    def loss(x, t):
        return jax_dfl.distribution_focal_loss(x, t, bin_values=values)

    assert_close(jax_grad(loss, logits, y), numerical_grad(lambda x: reference(x, y), logits))
    assert_close(jax_grad(loss, logits, y, argnum=1), numerical_grad(lambda t: reference(logits, t), y))


@pytest.mark.parametrize("sigma", [0.3, 0.75, 2.0])
def test_hl_gauss_logit_gradient(sigma):
    rng = np.random.default_rng(int(sigma * 100))
    logits = rng.normal(scale=2.0, size=(5, 11))
    y = rng.uniform(0, 10, 5)
    label = ref_hl_gauss(y, 11, sigma)
    expected = numerical_grad(lambda x: ref.cross_entropy(label, x), logits)

    def loss(x, t):
        return jax_dfl.hl_gauss_loss(x, t, sigma=sigma)

    assert_close(jax_grad(loss, logits, y), expected)


@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_quality_focal_loss_gradients(beta):
    rng = np.random.default_rng(int(beta))
    x = rng.normal(scale=3.0, size=(4, 6))
    q = rng.uniform(0, 1, (4, 6))
    q[0, :3] = 0.0  # background
    # |sigmoid(x) - q| ** beta has a kink where they meet: keep every point off it.
    assert np.abs(ref.sigmoid(x) - q).min() > 1e-3

    def loss(a, b):
        return jax_dfl.quality_focal_loss(a, b, beta=beta)

    assert_close(jax_grad(loss, x, q), numerical_grad(lambda a: ref.quality_focal(a, q, beta), x))
    assert_close(jax_grad(loss, x, q, argnum=1), numerical_grad(lambda b: ref.quality_focal(x, b, beta), q))


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_distillation_student_gradient(temperature):
    rng = np.random.default_rng(int(temperature))
    s, t = rng.normal(scale=3.0, size=(2, 3, 4, 9))
    pt = ref.softmax(t / temperature)

    def reference(a):
        return temperature**2 * ref.kl(pt, ref.softmax(a / temperature))

    def loss(a, b):
        return jax_dfl.distribution_distillation_loss(a, b, temperature=temperature)

    assert_close(jax_grad(loss, s, t), numerical_grad(reference, s))


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_decode_gradient(scale):
    logits = np.random.default_rng(int(scale * 10)).normal(scale=scale, size=(3, 2, 8))
    assert_close(jax_grad(jax_dfl.decode, logits), numerical_grad(ref.decode, logits))


def boxes(rng, n: int) -> np.ndarray:
    xy = rng.uniform(0, 20, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(1, 12, (n, 2))], -1)


def overlapping(rng, n: int):
    """Pairs of boxes, most overlapping, some apart, none touching an edge case of a max/min tie."""
    a = boxes(rng, n)
    b = a + rng.normal(scale=3.0, size=a.shape)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    b[-1] = a[-1] + 40.0  # disjoint
    return a, b


@pytest.mark.parametrize("kind", ["iou", "giou", "diou"])
@pytest.mark.parametrize("argnum", [0, 1])
def test_box_loss_gradients_both_arguments(kind, argnum):
    rng = np.random.default_rng(7)
    a, b = overlapping(rng, 8)
    fn = {
        "iou": jax_dfl.box_iou,
        "giou": lambda p, t: 1 - jax_dfl.giou_loss(p, t),
        "diou": lambda p, t: 1 - jax_dfl.diou_loss(p, t),
    }[kind]

    def reference(x):
        pair = (x, b) if argnum == 0 else (a, x)
        return np.array([ref_det.iou_value(p, t, kind) for p, t in zip(*pair, strict=True)])

    expected = numerical_grad(reference, a if argnum == 0 else b)
    assert_close(jax_grad(fn, a, b, argnum=argnum), expected)


def test_ciou_gradient_is_the_frozen_alpha_derivative():
    # CIoU's alpha is held constant in the gradient (as the CIoU paper and ultralytics do): the
    # gradient is that of CIoU with alpha fixed at its value at the point. Wide predictions against
    # tall targets, so that the aspect term (and alpha's own derivative) is large.
    rng = np.random.default_rng(11)
    xy, w, h = rng.uniform(0, 20, (8, 2)), rng.uniform(6, 12, 8), rng.uniform(1, 3, 8)
    a = np.stack([xy[:, 0], xy[:, 1], xy[:, 0] + w, xy[:, 1] + h], -1)
    centre = np.stack([xy[:, 0] + w / 2, xy[:, 1] + h / 2], -1) + rng.normal(scale=1.0, size=(8, 2))
    b = np.stack([centre[:, 0] - h, centre[:, 1] - w / 2, centre[:, 0] + h, centre[:, 1] + w / 2], -1)
    alpha = [ref_det.ciou_alpha(p, t) for p, t in zip(a, b, strict=True)]

    def frozen(x):
        return np.array(
            [1 - ref_det.ciou_frozen_alpha(p, t, al) for p, t, al in zip(x, b, alpha, strict=True)]
        )

    def full(x):
        return np.array([1 - ref_det.iou_value(p, t, "ciou") for p, t in zip(x, b, strict=True)])

    expected = numerical_grad(frozen, a)
    assert_close(jax_grad(jax_dfl.ciou_loss, a, b), expected)
    # The check can tell the two apart: differentiating alpha too moves every entry well past the
    # tolerance, so a gradient that did would fail above.
    tolerance = 2e-3 * np.abs(expected) + 1e-4 * np.abs(expected).max()
    assert (np.abs(numerical_grad(full, a) - expected) > 10 * tolerance).all()
