"""Data parallelism over several processes, each holding part of the devices.

    python -m experiments.multiprocess --processes 2 --local-devices 2 --out runs/multiprocess.json

starts ``--processes`` copies of this module on this machine (JAX's CPU backend,
gloo collectives, coordinator on 127.0.0.1), each with ``--local-devices``
virtual CPU devices. Together they build one global mesh with
:func:`jax_dfl.parallel.data_mesh`, feed each process's slice of every batch
with :func:`jax.make_array_from_process_local_data`, and compute the DFL loss
and its gradient and a few data-parallel training steps of the toy model.
Process 0 writes the measurements as JSON; ``tests/test_multiprocess.py``
compares them with one process on one device.

On real hosts the recipe is the same, minus the CPU settings: run the same
script on every host with ``jax.distributed.initialize()`` first (its
arguments are the coordinator's address, the number of processes and this
process's id; on TPU pods and under SLURM/Open MPI they are detected).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

BATCH = 64  # rows of the DFL check and examples per training step, global
STEPS = 6


def measure(mesh) -> dict:
    """DFL loss and gradient on a global batch, then a few toy training steps.

    Runs the same on one process (the reference) and on several: every process
    draws the same global batch from a fixed key and feeds only its own rows.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from jax.experimental import multihost_utils

    import jax_dfl
    from experiments.toy_regression import model as toy_model
    from experiments.toy_regression import task as toy_task
    from experiments.toy_regression import train as toy_train
    from jax_dfl import parallel

    rows = parallel.process_batch_slice(BATCH, mesh)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(BATCH, 4, 17)).astype(np.float32)
    targets = rng.uniform(-0.5, 16.5, size=(BATCH, 4)).astype(np.float32)
    mask = rng.random((BATCH, 4)) < 0.8

    def mean_dfl(x, y, m):
        return jax_dfl.distribution_focal_loss(x, y, where=m).sum() / m.sum()

    x, y, m = parallel.shard_process_local((logits[rows], targets[rows], mask[rows]), mesh)
    loss, grad = jax.jit(jax.value_and_grad(mean_dfl))(x, y, m)
    out = {
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "rows_fed_by_process_0": [rows.start, rows.stop] if jax.process_index() == 0 else None,
        "dfl_loss": float(loss),
        # Gathered to every process: the gradient is sharded over all devices.
        "dfl_grad": np.asarray(multihost_utils.process_allgather(grad, tiled=True)).tolist(),
        "dfl_grad_shards": len(grad.sharding.device_set),
    }

    task = toy_task.TaskConfig()
    config = toy_train.TrainConfig(hidden=32, batch_size=BATCH, steps=STEPS, warmup_steps=2)
    x_eval, y_eval = (np.asarray(a) for a in toy_task.make_batch(jax.random.key(99), 128, task))
    for loss_name in ("dfl", "l1"):
        model = toy_model.ToyRegressor(
            loss_name, task, hidden=config.hidden, depth=config.depth, rngs=nnx.Rngs(0)
        )
        optimizer = nnx.Optimizer(model, toy_train.make_optimizer(config, 1e-2), wrt=nnx.Param)
        graphdef, state = nnx.split((model, optimizer))
        state = parallel.replicate(state, mesh)  # the same initial values on every process

        @jax.jit
        def train_step(state, x, y, loss_name=loss_name, graphdef=graphdef):
            model, optimizer = nnx.merge(graphdef, state)

            def objective(model):
                return toy_model.training_loss(loss_name, model(x), model.targets(y)).mean()

            value, grads = nnx.value_and_grad(objective)(model)
            optimizer.update(model, grads)
            return nnx.split((model, optimizer))[1], value

        losses = []
        for step in range(STEPS):
            xb, yb = (np.asarray(a) for a in toy_task.make_batch(jax.random.key(step), BATCH, task))
            xb, yb = parallel.shard_process_local((xb[rows], yb[rows]), mesh)
            state, value = train_step(state, xb, yb)
            losses.append(float(value))
        model, _ = nnx.merge(graphdef, state)
        x_eval_global = parallel.replicate(x_eval, mesh)
        predictions = jax.jit(lambda m, x: m.predict(x))(model, x_eval_global)
        out[f"{loss_name}_train_losses"] = losses
        out[f"{loss_name}_eval_mae"] = float(jnp.mean(jnp.abs(predictions.addressable_data(0) - y_eval)))
    return out


def worker(args) -> None:
    import jax

    # CPU stand-ins for several hosts: set before JAX starts its backends.
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.local_devices)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}",
        num_processes=args.processes,
        process_id=args.process_id,
        initialization_timeout=int(args.timeout),
    )
    from jax_dfl import parallel

    result = measure(parallel.data_mesh())
    if jax.process_index() == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result))
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, local_devices: int, out: pathlib.Path, *, timeout: float = 240) -> dict:
    """Start the processes, wait for all (at most ``timeout`` s), and return process 0's results.

    If any process fails or the time runs out, every process is ended and a
    RuntimeError carries the failing process's output.
    """
    port = free_port()
    # Run as a module from the checkout's root, whatever the caller's working directory.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # the device count comes from jax_num_cpu_devices
    procs = []
    for i in range(processes):
        cmd = [sys.executable, "-m", "experiments.multiprocess", "--worker", "--process-id", str(i)]
        cmd += ["--port", str(port)]
        cmd += ["--processes", str(processes), "--local-devices", str(local_devices), "--out", str(out)]
        cmd += ["--timeout", str(int(timeout))]
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    deadline = time.monotonic() + timeout
    try:
        for i, proc in enumerate(procs):
            try:
                output, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"process {i} did not finish within {timeout} s") from None
            if proc.returncode != 0:
                raise RuntimeError(f"process {i} exited with {proc.returncode}:\n{output[-4000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return json.loads(out.read_text())


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--local-devices", type=int, default=2)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/multiprocess.json"))
    p.add_argument("--timeout", type=int, default=240)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return None
    result = launch(args.processes, args.local_devices, args.out, timeout=args.timeout)
    print(
        f"{result['process_count']} processes x {result['local_device_count']} devices: "
        f"DFL loss {result['dfl_loss']:.6f}, gradient over {result['dfl_grad_shards']} devices; "
        f"toy DFL training losses {[round(v, 4) for v in result['dfl_train_losses']]}"
    )
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
