"""Localization Distillation: matching a teacher's bin distributions.

Inputs follow the input rules of ``docs/conventions.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_dfl import _checks


def distribution_distillation_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float | ArrayLike = 10.0,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""KL divergence from the teacher's to the student's softened bin distribution.

    With student logits :math:`s`, teacher logits :math:`t` and temperature :math:`T`,

    .. math::
      \mathcal{L} = T^2\, \mathrm{KL}\big(\mathrm{softmax}(t / T)\,\|\,\mathrm{softmax}(s / T)\big)

    per distribution (the last axis), as in Localization Distillation. The
    :math:`T^2` factor keeps gradient magnitudes comparable across
    temperatures. The teacher is treated as a constant (``stop_gradient``).
    It is 0 exactly when the two distributions agree.

    Args:
      student_logits: ``(..., num_bins)``.
      teacher_logits: same shape as ``student_logits``.
      temperature: softening temperature ``T > 0`` (keyword-only; may be traced,
        e.g. swept under ``jit``).
      where: optional boolean mask of shape ``student_logits.shape[:-1]``;
        masked rows give 0 value and 0 gradient, whatever they hold.

    Returns:
      Shape ``student_logits.shape[:-1]``, at least float32.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0.0, 1.0, 2.0]])
      >>> print(distribution_distillation_loss(s, s))
      [0.]

    References:
      Zheng et al., `Localization Distillation for Dense Object Detection
      <https://arxiv.org/abs/2102.12252>`_, CVPR 2022.
    """
    student, teacher, where = _checks.arrays(
        "distribution_distillation_loss",
        student_logits=(student_logits, "float", "... num_bins"),
        teacher_logits=(teacher_logits, "float", "... num_bins"),
        where=(where, "bool | None", "..."),
        minimum={"num_bins": 2},
    )
    temperature = _checks.positive("temperature", temperature)
    dtype = _checks.compute_dtype(student.dtype, teacher.dtype)
    student, teacher = student.astype(dtype), teacher.astype(dtype)
    if where is not None:
        # Masked rows may hold NaN: zero them before the softmax, so that no NaN
        # reaches the gradient through the unselected branch.
        student = jnp.where(where[..., None], student, 0)
        teacher = jnp.where(where[..., None], teacher, 0)
    log_p_student = jax.nn.log_softmax(student / temperature, axis=-1)
    log_p_teacher = jax.lax.stop_gradient(jax.nn.log_softmax(teacher / temperature, axis=-1))
    p_teacher = jnp.exp(log_p_teacher)
    # 0 log 0 = 0; spelled `== 0` (not `> 0`) so that a NaN teacher gives NaN, not 0.
    kl = jnp.sum(jnp.where(p_teacher == 0, 0, p_teacher * (log_p_teacher - log_p_student)), axis=-1)
    kl = kl * temperature**2
    return kl if where is None else jnp.where(where, kl, 0)
