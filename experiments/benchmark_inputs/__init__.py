"""Inputs of the benchmark at realistic sizes (imported by ``experiments.benchmark``)."""
