#!/usr/bin/env bash
# The checks to run on a GPU/TPU machine, in one go. It needs only jax, flax, optax,
# chex, numpy, matplotlib and tqdm (no network, no install):
#
#     bash experiments/accelerator_checks.sh runs/accelerator
#
# Then copy the output folder's small files into results/ and the tables into the README.
set -euo pipefail
out=${1:-runs/accelerator}
mkdir -p "$out"
cd "$(dirname "$0")/.."  # the checkout's root: the experiments run as modules from there
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee "$out/devices.txt"
# Benchmark first: a few seconds, and the GPU bandwidth figures it prints.
python3 -m experiments.benchmark --json "$out/benchmark.json" | tee "$out/benchmark.txt"
python3 -m experiments.toy_regression.main --config accelerator --out "$out/toy_regression"
python3 -m experiments.synthetic_detection.main --preset accelerator --out "$out/detection"
