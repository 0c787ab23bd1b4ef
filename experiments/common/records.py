"""What a run ran on, for the records the experiment scripts write."""

from __future__ import annotations

import functools
import os
import pathlib
import platform
import subprocess
import time

import jax


def device_info() -> dict:
    """Platform, device kind and count, versions, host architecture and date."""
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "host": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def provenance() -> dict:
    """What a record needs to be traced: the checkout's commit (and whether it had uncommitted
    changes) when this process first asked, i.e. the code it loaded (an entry point asks at its
    start, as commits made while it runs do not change that code), ``XLA_FLAGS`` and the CPUs the
    process may use (XLA's CPU thread count follows them), and the versions of the libraries that
    compute a run (a record reproduces bit for bit only with the same ones)."""
    return {
        **_checkout(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "versions": _versions(),
    }


@functools.cache
def _versions() -> dict:
    import jaxlib
    import numpy

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": numpy.__version__}


@functools.cache
def _checkout() -> dict:
    root = pathlib.Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if status is None else bool(status),
    }
