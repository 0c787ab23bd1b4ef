"""Data parallelism over 2 processes x 2 CPU devices (gloo collectives on 127.0.0.1).

The processes run ``python -m experiments.multiprocess``; the reference is the same
measurement on this process's single device.
"""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest

from jax_dfl import parallel


def _script():
    return importlib.import_module("experiments.multiprocess")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    script = _script()
    out = tmp_path_factory.mktemp("multiprocess") / "result.json"
    several = script.launch(2, 2, out, timeout=300)
    one = script.measure(parallel.data_mesh())
    return several, one


def test_two_processes_built_one_mesh_of_four_devices(runs):
    several, one = runs
    assert several["process_count"] == 2 and several["local_device_count"] == 2
    assert several["device_count"] == 4 and several["dfl_grad_shards"] == 4
    # Process 0 fed the first half of every batch, process 1 the second.
    assert several["rows_fed_by_process_0"] == [0, 32]
    assert one["process_count"] == 1 and one["rows_fed_by_process_0"] == [0, 64]


def test_dfl_loss_and_gradient_match_one_process(runs):
    several, one = runs
    assert several["dfl_loss"] == pytest.approx(one["dfl_loss"], rel=1e-6)
    np.testing.assert_allclose(several["dfl_grad"], one["dfl_grad"], atol=1e-7)
    assert np.abs(np.asarray(one["dfl_grad"])).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("loss", ["dfl", "l1"])
def test_training_steps_match_one_process(runs, loss):
    several, one = runs
    losses = np.asarray(one[f"{loss}_train_losses"])
    assert losses[-1] < losses[0]  # the steps did train
    np.testing.assert_allclose(several[f"{loss}_train_losses"], losses, rtol=1e-5)
    assert several[f"{loss}_eval_mae"] == pytest.approx(one[f"{loss}_eval_mae"], rel=1e-4)


def test_launcher_reports_a_failing_process(tmp_path):
    # One process of two never meets its peer: the launcher ends both and says which.
    with pytest.raises(RuntimeError, match="process"):
        _script().launch(2, 0, tmp_path / "never.json", timeout=60)


def test_process_local_helpers_on_one_process():
    mesh = parallel.data_mesh()
    assert parallel.process_batch_slice(8, mesh) == slice(0, 8)
    x = np.arange(12.0).reshape(6, 2)
    g = parallel.shard_process_local(x, mesh)
    np.testing.assert_array_equal(g, x)
    r = parallel.replicate({"w": np.ones(3)}, mesh)
    assert r["w"].sharding.is_fully_replicated
    assert jax.device_count() == 1
    with pytest.raises(ValueError, match="global_batch_size"):
        parallel.process_batch_slice(0, mesh)
