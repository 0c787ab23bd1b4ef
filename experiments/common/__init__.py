"""Helpers shared by the experiment scripts (not part of the installed ``jax_dfl`` package)."""
