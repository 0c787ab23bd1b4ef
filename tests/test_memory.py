"""Structural checks on what XLA compiles: no (rows, bins) temporaries.

Timings are not tested (shared machines are noisy); the benchmark script
reports them. Scratch memory is deterministic for a given XLA, so it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jax_dfl

ROWS, BINS = 65536, 17


def _scratch(fn, *args) -> int:
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    if mem is None:
        pytest.skip("this backend reports no memory analysis")
    return mem.temp_size_in_bytes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_value_and_grad_has_no_rows_by_bins_scratch(dtype):
    x = jnp.zeros((ROWS, BINS), dtype)
    y = jnp.zeros((ROWS,), jnp.float32)
    dfl = jax.value_and_grad(lambda x, y: jax_dfl.distribution_focal_loss(x, y).mean())
    lse = jax.value_and_grad(lambda x, y: jax.nn.logsumexp(x.astype(jnp.float32), -1).mean())
    dfl_scratch = _scratch(dfl, x, y)
    if dtype == jnp.float32:
        assert dfl_scratch <= 0.3 * x.nbytes, (dfl_scratch, x.nbytes)
    # For contrast, the dense two-hot formulation does keep such a temporary.
    naive = jax.value_and_grad(
        lambda x, y: -(jax_dfl.two_hot(y, BINS) * jax.nn.log_softmax(x.astype(jnp.float32))).sum(-1).mean()
    )
    assert _scratch(naive, x, y) >= ROWS * BINS * 4
    # And it is no more than the floor's own. (For bf16, XLA:CPU stores the
    # float32 upcast of the logits for its reductions, in both.)
    assert dfl_scratch <= _scratch(lse, x, y) * 1.01 + 4096, (dfl_scratch, _scratch(lse, x, y))


def test_forward_and_decode_have_no_rows_by_bins_scratch():
    x = jnp.zeros((ROWS, BINS))
    y = jnp.zeros((ROWS,))
    assert _scratch(jax_dfl.distribution_focal_loss, x, y) <= 0.3 * x.nbytes
    assert _scratch(jax_dfl.decode, x) <= 0.3 * x.nbytes
