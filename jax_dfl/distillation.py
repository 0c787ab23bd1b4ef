"""Localization Distillation: matching a teacher's bin distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jax_dfl import _checks


def distribution_distillation_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 10.0,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""KL divergence from the teacher's to the student's softened bin distribution.

    .. math::
      \mathcal{L} = T^2\, \mathrm{KL}\big(\mathrm{softmax}(t / T)\,\|\,\mathrm{softmax}(s / T)\big)

    per distribution (the last axis), as in Localization Distillation. The
    :math:`T^2` factor keeps gradient magnitudes comparable across
    temperatures. The teacher is treated as a constant (``stop_gradient``).
    It is 0 exactly when the two distributions agree.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0.0, 1.0, 2.0]])
      >>> print(distribution_distillation_loss(s, s))
      [0.]

    Args:
      student_logits: ``(..., num_bins)``.
      teacher_logits: same shape as ``student_logits``.
      temperature: softening temperature ``T > 0`` (keyword-only).
      where: optional boolean mask of shape ``student_logits.shape[:-1]``.

    Returns:
      Shape ``student_logits.shape[:-1]``, at least float32.

    References:
      Zheng et al., `Localization Distillation for Dense Object Detection
      <https://arxiv.org/abs/2102.12252>`_, CVPR 2022.
    """
    student = jnp.asarray(student_logits)
    teacher = jnp.asarray(teacher_logits)
    _checks.check_logits(student)
    _checks.check_logits(teacher)
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher_logits.shape must equal student_logits.shape: "
            f"teacher={teacher.shape}, student={student.shape}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    where = _checks.check_where(where, student.shape)
    dtype = _checks.compute_dtype(student.dtype, teacher.dtype)
    log_p_student = jax.nn.log_softmax(student.astype(dtype) / temperature, axis=-1)
    log_p_teacher = jax.lax.stop_gradient(jax.nn.log_softmax(teacher.astype(dtype) / temperature, axis=-1))
    p_teacher = jnp.exp(log_p_teacher)
    kl = jnp.sum(jnp.where(p_teacher > 0, p_teacher * (log_p_teacher - log_p_student), 0), axis=-1)
    kl = temperature**2 * kl
    return kl if where is None else jnp.where(where, kl, 0)
