"""Data parallelism over a mesh of 8 virtual CPU devices (in a subprocess)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from jax_dfl import parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sharded() -> dict:
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip())
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharded_worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rest_of_suite_keeps_one_device():
    assert jax.device_count() == 1


def test_worker_saw_eight_devices(sharded):
    assert sharded["device_count"] == 8


def test_sharded_loss_and_gradient_match_one_device(sharded):
    assert sharded["loss_abs_diff"] < 1e-6
    assert sharded["grad_max_abs_diff"] < 1e-7
    assert sharded["per_element_max_abs_diff"] < 1e-5
    assert sharded["grad_sharded_over"] == 8


def test_per_element_outputs_keep_the_batch_sharding(sharded):
    assert sharded["loss_keeps_batch_sharding"]
    assert sharded["decode_keeps_batch_sharding"]


@pytest.mark.parametrize("loss", ["dfl", "l1"])
def test_sharded_training_steps_match_unsharded(sharded, loss):
    assert sharded[f"{loss}_curve_changed"] > 0.05  # training did move the model
    assert sharded[f"{loss}_curve_max_rel_diff"] < 1e-4


def test_experiment_script_uses_all_local_devices(sharded):
    assert sharded["script_data_parallel_devices"] == 8


def test_mesh_helpers_on_one_device():
    mesh = parallel.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == 1
    assert parallel.batch_sharding(mesh, 3).spec == jax.sharding.PartitionSpec("data", None, None)
