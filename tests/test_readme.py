"""The README's Python snippets run, in order, in one namespace.

The snippets of the documentation pages run in tests/test_docs.py.
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 1  # the quick start
    namespace: dict = {}
    for block in blocks:
        # Indented blocks sit inside list items in the README.
        lines = block.splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        code = "\n".join(line[indent:] for line in lines)
        if "err.throw()" in code:
            # The checkify example: valid targets, so nothing to throw.
            code = code.replace("err.throw()", "assert err.get() is None")
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["loss"].shape == (8, 4)
    assert namespace["grads"].shape == (8, 4, 16)
    assert namespace["values"].shape == (8, 4)
