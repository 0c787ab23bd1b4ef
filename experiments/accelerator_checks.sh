#!/usr/bin/env bash
# The checks to run on a GPU/TPU machine, in one go. It needs only jax, flax, optax,
# chex, numpy, matplotlib and tqdm (no network, no install):
#
#     PYTHONPATH=. bash experiments/accelerator_checks.sh runs/accelerator
#
# Then copy the output folder's small files into results/ and the tables into the README.
set -euo pipefail
out=${1:-runs/accelerator}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-.}"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee "$out/devices.txt"
# Benchmark first: a few seconds, and the GPU bandwidth figures it prints.
python3 experiments/benchmark.py --json "$out/benchmark.json" | tee "$out/benchmark.txt"
python3 experiments/toy_regression/main.py --preset accelerator --out "$out/toy_regression"
python3 experiments/synthetic_detection/main.py --preset accelerator --out "$out/detection"
