"""Run by tests/test_parallel.py in a subprocess with 8 virtual CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 PYTHONPATH=. python tests/sharded_worker.py

Kept out of the main test process so that the rest of the suite sees one
device (the flag is set by the test for the subprocess only). Prints one JSON
object of measurements; the assertions live in the test.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

import jax_dfl
from experiments.toy_regression import task as toy_task
from experiments.toy_regression import train as toy_train
from jax_dfl import parallel


def main() -> None:
    out: dict = {"device_count": jax.device_count()}
    mesh = parallel.data_mesh()
    key = jax.random.key(0)
    logits = jax.random.normal(key, (64, 4, 17))
    targets = jax.random.uniform(jax.random.key(1), (64, 4), maxval=16)
    mask = jax.random.bernoulli(jax.random.key(2), 0.8, (64, 4))

    def mean_loss(x, y, m):
        return jax_dfl.distribution_focal_loss(x, y, where=m).sum() / m.sum()

    loss1, grad1 = jax.jit(jax.value_and_grad(mean_loss))(logits, targets, mask)
    xs, ys, ms = parallel.shard_batch((logits, targets, mask), mesh)
    loss8, grad8 = jax.jit(jax.value_and_grad(mean_loss))(xs, ys, ms)
    per_element = jax.jit(lambda x, y: jax_dfl.distribution_focal_loss(x, y))(xs, ys)
    decoded = jax.jit(jax_dfl.decode)(xs)
    out["loss_abs_diff"] = float(abs(loss1 - loss8))
    out["grad_max_abs_diff"] = float(jnp.max(jnp.abs(grad1 - grad8)))
    out["grad_sharded_over"] = len(grad8.sharding.device_set)
    expected = parallel.batch_sharding(mesh, 2)
    out["loss_keeps_batch_sharding"] = bool(per_element.sharding.is_equivalent_to(expected, 2))
    out["decode_keeps_batch_sharding"] = bool(decoded.sharding.is_equivalent_to(expected, 2))
    out["per_element_max_abs_diff"] = float(
        jnp.max(jnp.abs(per_element - jax_dfl.distribution_focal_loss(logits, targets)))
    )

    task = toy_task.TaskConfig()
    train = toy_train.TrainConfig(hidden=32, steps=30, batch_size=64)
    data = toy_task.make_batch(jax.random.key(5), 128, task)
    kwargs = dict(
        task=task, train_config=train, learning_rate=3e-3, eval_steps=[0, 10, 20, 30], eval_data=data,
        test_inputs=data[0],
    )  # fmt: skip
    for loss in ("dfl", "l1"):
        single = toy_train.train(loss, [0, 1], **kwargs)
        sharded = toy_train.train(loss, [0, 1], mesh=mesh, **kwargs)
        out[f"{loss}_curve_max_rel_diff"] = float(
            np.max(np.abs(single.curves - sharded.curves) / np.abs(single.curves))
        )
        out[f"{loss}_curve_changed"] = float(single.curves[0, 0] - single.curves[0, -1])
    # The experiment script splits its batches over all local devices by itself.
    import tempfile

    from experiments.toy_regression import main as script

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--config", "smoke", "--set", "seeds=1", "lrs=3e-3", "losses=dfl", "train.steps=20"]
        results = script.main([*argv, "--out", tmp])
    out["script_data_parallel_devices"] = results["device"]["data_parallel_devices"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
