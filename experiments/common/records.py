"""What a run ran on, for the records the experiment scripts write."""

from __future__ import annotations

import platform
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
