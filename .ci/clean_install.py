"""Check an install of jax_dfl with no extras, in a fresh virtual environment.

Usage (from outside the checkout, so that the installed package is the one imported):
``VENV/bin/python /path/to/.ci/clean_install.py``. CI creates VENV, runs ``pip install .`` in it
and then this script, which checks:

- only the runtime dependencies came: jax, jaxlib, chex and numpy are there, and none of flax,
  optax, matplotlib, tqdm or pycocotools;
- ``jax_dfl.__version__`` is the installed distribution's version;
- the README's quick start (its ``python`` code block, read from README.md) runs;
- ``import jax_dfl.nn`` fails with an ImportError that names commands to install flax, at the
  ``nn`` extra's bound; ``coco_evaluate``'s hint names pycocotools at the ``eval`` extra's bound;
- the modules that need no extra import, and ``help(jax_dfl)`` gives the overview.
"""

from __future__ import annotations

import importlib.metadata as metadata
import pathlib
import pydoc
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = ("jax", "jaxlib", "chex", "numpy")
NOT_WANTED = ("flax", "optax", "matplotlib", "tqdm", "pycocotools")


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def extra_bound(extra: str, name: str) -> str:
    """The requirement on ``name`` in the installed metadata's ``extra``, e.g. ``flax>=0.10.2``."""
    for requirement in metadata.requires("jax_dfl") or []:
        spec, _, marker = requirement.partition(";")
        if spec.strip().startswith(name) and f'extra == "{extra}"' in marker:
            return spec.strip()
    raise AssertionError(f"no {name} requirement in the {extra} extra")


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README.md: no python block under '## Quick start'"
    return match.group(1)


def main() -> None:
    missing = [n for n in RUNTIME if not installed(n)]
    assert not missing, f"runtime dependencies not installed: {missing}"
    extra = [n for n in NOT_WANTED if installed(n)]
    assert not extra, f"installed without being asked for: {extra}"

    import jax_dfl

    location = pathlib.Path(jax_dfl.__file__).resolve()
    assert ROOT not in location.parents, f"imported the checkout's jax_dfl ({location}), not the installed"
    version = metadata.version("jax_dfl")
    assert jax_dfl.__version__ == version, f"__version__ {jax_dfl.__version__}, metadata {version}"

    namespace: dict = {}
    exec(compile(quick_start(), "README.md (quick start)", "exec"), namespace)
    assert namespace["loss"].shape == namespace["values"].shape == (8, 4), "quick start: unexpected shapes"
    print("README quick start ran: loss", namespace["loss"].shape, "grads", namespace["grads"].shape)

    try:
        import jax_dfl.nn
    except ImportError as error:
        message = str(error)
    else:
        raise AssertionError("jax_dfl.nn imported without flax")
    for command in (f'pip install "{extra_bound("nn", "flax")}"', 'pip install ".[nn]"', "jax_dfl[nn]"):
        assert command in message, f"jax_dfl.nn's ImportError does not name {command!r}: {message}"
    print("import jax_dfl.nn without flax:", message)

    import jax_dfl.evaluation
    import jax_dfl.inspection
    import jax_dfl.parallel

    try:
        jax_dfl.evaluation._import_pycocotools()
    except ImportError as error:
        message = str(error)
    else:
        raise AssertionError("pycocotools imported although no extra was installed")
    for command in (f'pip install "{extra_bound("eval", "pycocotools")}"', 'pip install ".[eval]"'):
        assert command in message, f"coco_evaluate's ImportError does not name {command!r}: {message}"

    overview = pydoc.render_doc(jax_dfl, renderer=pydoc.plaintext)
    for part in ("Distribution Focal Loss", "What lives where", "jax_dfl.nn", "jax_dfl.parallel"):
        assert part in overview, f"help(jax_dfl) does not mention {part!r}"
    print(f"clean install of jax_dfl {jax_dfl.__version__} passed")


if __name__ == "__main__":
    main()
