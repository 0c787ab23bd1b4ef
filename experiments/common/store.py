"""Resumable runs: one record file per finished run, written atomically, skipped on restart.

A study plans its runs up front in a fixed order and groups them into fixed batches; a batch
is trained only when one of its runs has no record yet. Because the batches are the same on
every start, a restarted study trains exactly what an uninterrupted one would have, and its
results are the same (tested in tests/test_machinery.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
from typing import Any

import numpy as np


def json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


class RunStore:
    """``directory/<key>.json`` per finished run (and an optional ``<key>.pkl`` for large objects)."""

    def __init__(self, directory: pathlib.Path):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str, suffix: str = ".json") -> pathlib.Path:
        return self.directory / f"{key}{suffix}"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def read(self, key: str) -> dict:
        return json.loads(self.path(key).read_text())

    def read_object(self, key: str) -> Any:
        with self.path(key, ".pkl").open("rb") as f:
            return pickle.load(f)

    def _atomic(self, path: pathlib.Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a cut-off write leaves no half record behind

    def write(self, key: str, record: dict, obj: Any = None) -> None:
        """Write the run's record (and ``obj``, pickled, first: the JSON marks the run finished)."""
        if obj is not None:
            self._atomic(self.path(key, ".pkl"), pickle.dumps(obj))
        self._atomic(self.path(key), json.dumps(record, indent=1, default=json_default).encode())

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))
