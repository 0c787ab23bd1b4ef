"""Print the seed document's worked examples, computed by jax_dfl.

python -m experiments.seed_examples
"""

import math

import jax.numpy as jnp
import numpy as np

import jax_dfl


def main() -> None:
    np.set_printoptions(precision=4, suppress=True)
    print("jax_dfl", jax_dfl.__version__)
    print("two_hot(2.37, 6) =", np.asarray(jax_dfl.two_hot(2.37, 6)))
    print("two_hot(4.8, 6)  =", np.asarray(jax_dfl.two_hot(4.8, 6)))

    p1 = jnp.array([0.0, 0.05, 0.60, 0.40, 0.0, 0.0])
    loss1 = jax_dfl.distribution_focal_loss(jnp.log(p1), jnp.array(2.37))
    print(f"\nExample 1: y=2.37, prediction {np.asarray(p1)} sums to {float(p1.sum()):.2f}")
    print(
        f"  as printed in the seed, -(0.63 ln 0.60 + 0.37 ln 0.40) = "
        f"{-(0.63 * math.log(0.6) + 0.37 * math.log(0.4)):.4f} (not a distribution)"
    )
    print(f"  DFL of the renormalised softmax                 = {float(loss1):.4f}")

    p2 = jnp.array([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
    loss2 = jax_dfl.distribution_focal_loss(jnp.log(p2), jnp.array(4.8))
    entropy = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    print(f"\nExample 2: y=4.8, prediction equal to the target {np.asarray(p2)}")
    print(f"  DFL = {float(loss2):.4f} = entropy of the target {entropy:.4f} (the minimum, not 0)")
    print(f"  decode = 4*0.2 + 5*0.8 = {float(jax_dfl.decode(jnp.log(p2))):.4f}")


if __name__ == "__main__":
    main()
