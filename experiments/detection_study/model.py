"""A small multi-level anchor-free detector in Flax NNX (about 0.1 M parameters).

Backbone: four stride-2 stages (strides 2, 4, 8, 16) of a strided 3x3 conv and a
residual 3x3 conv; a top-down FPN brings the stride-16 context down to every
output level; one head, shared by the levels, of two 3x3 convs, then a 1x1
class conv (one class) and a 1x1 box conv: 4 scalar distances or 4 x K bin
logits. The backbone is the same for every choice of output ``strides``, so the
synthetic resolution test (one output level at stride 2, 4 or 8) changes only
where the head reads, not the network's depth or receptive field.

Strides 4/8/16 for the crowns (not YOLO's 8/16/32): at the working scale 0.5
crowns are 4-53 px across, and the task-aligned assigner only takes points
strictly inside a box, so the smallest crowns need a stride-4 grid; the
largest crown's centre-to-side distance, 27 px, is under 7 bins at stride 4,
well inside K = 16 bins (ultralytics' ``reg_max``).

Initialisation is paired across arms: the backbone, neck and class head are
built first from the same ``nnx.Rngs(seed)``, the box head last, so two arms with
the same seed start from identical shared weights. Every arm's initial boxes
have about ``initial_bins`` bins per side (2 by default): the assigner scores
points by ``IoU**6``, and uniform bin distributions (7.5 bins per side) would
give the smallest crowns an alignment below its threshold, i.e. no foreground.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BACKBONE_STRIDES = (2, 4, 8, 16)
HEAD_STD = 0.01  # the 1x1 output convs start small, so the initial outputs are their biases


def geometric_logit_bias(bin_values: np.ndarray, mean: float) -> np.ndarray:
    """Logits ``-lam * v`` whose softmax has expected value ``mean`` (bisection on ``lam``)."""
    lo, hi = 0.0, 50.0
    for _ in range(100):
        lam = (lo + hi) / 2
        p = np.exp(-lam * (bin_values - bin_values[0]))
        if (p @ bin_values) / p.sum() > mean:
            lo = lam
        else:
            hi = lam
    return -lam * (bin_values - bin_values[0])


def box_bias(num_bins: int | None, bin_values, initial_bins: float) -> np.ndarray:
    """The box conv's initial bias: about ``initial_bins`` bins per side, for either head."""
    if num_bins is None:
        return np.full(4, math.log(math.expm1(initial_bins)), np.float32)  # softplus^-1
    values = np.arange(num_bins, dtype=np.float64) if bin_values is None else np.asarray(bin_values)
    return np.tile(geometric_logit_bias(values, initial_bins), 4).astype(np.float32)


CLS_BIAS = -math.log(99.0)  # class prior 0.01 (RetinaNet): the background dominates, start there


class Detector(nnx.Module):
    """``__call__(images (B, H, W, C))`` -> ``(class logits (B, A), box output)``.

    The box output is ``(B, A, 4)`` raw scalars (distances in bins are
    ``softplus`` of them) or ``(B, A, 4, K)`` logits; points are in the order of
    :func:`jax_dfl.anchor_points` over ``strides`` (finest level first).
    """

    def __init__(
        self,
        *,
        strides: Sequence[int] = (4, 8, 16),
        num_bins: int | None = None,
        bin_values: np.ndarray | None = None,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 24, 32, 48),
        neck: int = 32,
        initial_bins: float = 2.0,
        rngs: nnx.Rngs,
    ):
        if not set(strides) <= set(BACKBONE_STRIDES) or list(strides) != sorted(strides):
            raise ValueError(f"strides must be increasing and in {BACKBONE_STRIDES}; got {strides}")
        self.strides = tuple(int(s) for s in strides)
        self.num_bins = num_bins
        self.bin_values = None if bin_values is None else tuple(float(v) for v in bin_values)
        # LeCun normal without truncation: the truncated sampler costs several times more ops to build
        # (a model is built per run), for no difference that matters here.
        lecun = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
        conv = lambda i, o, **kw: nnx.Conv(i, o, kernel_size=(3, 3), kernel_init=lecun, rngs=rngs, **kw)
        chans = [in_channels, *widths]
        self.down = nnx.List([conv(chans[i], chans[i + 1], strides=2) for i in range(4)])
        self.res = nnx.List([conv(w, w) for w in widths])
        # Laterals from the finest output level up to stride 16 (the top-down path's inputs).
        first = BACKBONE_STRIDES.index(self.strides[0])
        self.lateral = nnx.List(
            [
                nnx.Conv(widths[i], neck, kernel_size=(1, 1), kernel_init=lecun, rngs=rngs)
                for i in range(first, 4)
            ]
        )
        self.head = nnx.List([conv(neck, neck), conv(neck, neck)])
        small = nnx.initializers.normal(HEAD_STD)
        self.cls = nnx.Conv(
            neck,
            1,
            kernel_size=(1, 1),
            kernel_init=small,
            rngs=rngs,
            bias_init=nnx.initializers.constant(CLS_BIAS),
        )
        bias = box_bias(num_bins, bin_values, initial_bins)
        out = len(bias)
        self.box = nnx.Conv(
            neck,
            out,
            kernel_size=(1, 1),
            kernel_init=small,
            bias_init=lambda *_: jnp.asarray(bias),
            rngs=rngs,
        )

    def features(self, images: jax.Array) -> list[jax.Array]:
        """Neck outputs at ``self.strides``, finest first."""
        x, levels = images, []
        for down, res in zip(self.down, self.res, strict=True):
            x = nnx.silu(down(x))
            x = x + nnx.silu(res(x))
            levels.append(x)
        first = BACKBONE_STRIDES.index(self.strides[0])
        top = None
        merged = {}
        for level in range(3, first - 1, -1):  # top-down: stride 16 first
            y = self.lateral[level - first](levels[level])
            if top is not None:
                y = y + jax.image.resize(top, y.shape, "nearest")
            merged[BACKBONE_STRIDES[level]] = top = y
        return [merged[s] for s in self.strides]

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        cls_out, box_out = [], []
        for f in self.features(images):
            for layer in self.head:
                f = nnx.silu(layer(f))
            batch = f.shape[0]
            cls_out.append(self.cls(f).reshape(batch, -1))
            box = self.box(f)
            box_out.append(
                box.reshape(batch, -1, 4)
                if self.num_bins is None
                else box.reshape(batch, -1, 4, self.num_bins)
            )
        return jnp.concatenate(cls_out, axis=1), jnp.concatenate(box_out, axis=1)


def feature_shapes(height: int, width: int, strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature-map shapes of an ``(height, width)`` input (each stride-2 conv with SAME padding: ceil)."""
    shapes = []
    h, w = height, width
    for s in BACKBONE_STRIDES:
        h, w = -(-h // 2), -(-w // 2)
        if s in strides:
            shapes.append((h, w))
    return shapes


def count_params(model: nnx.Module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def init_params(model: Detector, seed: int, *, initial_bins: float = 2.0) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, parameters)`` of ``model``'s structure, drawn with NumPy from ``seed``.

    The same distributions as the modules' own initialisers (LeCun normal kernels, zero biases,
    small output convs with the class prior and box biases), but each array is drawn from a
    generator keyed by ``(seed, its path)``: every parameter the arms share (all but ``box``) is
    identical across arms by construction, whatever was built before it, and building costs no
    compilation (NNX's eager initialisers compile every op once, about 20 s on a busy CPU).
    ``model`` may be abstract (``nnx.eval_shape``).
    """
    graphdef, state = nnx.split(model)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shape = tuple(leaf.shape)
        if name.startswith("['box']['bias']"):
            values = box_bias(model.num_bins, model.bin_values, initial_bins)
        elif name.startswith("['cls']['bias']"):
            values = np.full(shape, CLS_BIAS)
        elif "['bias']" in name:
            values = np.zeros(shape)
        elif name.startswith(("['box']", "['cls']")):
            values = rng.normal(0.0, HEAD_STD, shape)
        else:
            values = rng.normal(0.0, 1.0 / math.sqrt(np.prod(shape[:-1])), shape)  # LeCun normal
        return jnp.asarray(values, leaf.dtype)

    return graphdef, jax.tree_util.tree_map_with_path(draw, state)
