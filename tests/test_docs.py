"""The documentation sources: complete API pages, runnable snippets, a working link checker.

Reads the Markdown sources under docs/ (Sphinx is not needed); the site itself is built with
``sphinx-build -W`` in CI, which also executes the tutorials.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pathlib
import re
import types

import pytest

import jax_dfl
import jax_dfl.evaluation
import jax_dfl.inspection
import jax_dfl.nn
import jax_dfl.parallel
from tests.public_api import public_names

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBMODULES = [jax_dfl.nn, jax_dfl.inspection, jax_dfl.parallel, jax_dfl.evaluation]
TUTORIALS = ["gradients", "yolov8_port", "nnx_training", "data_parallel"]
TUTORIALS += ["qfl_assigner", "inference", "serving"]

DIRECTIVE = re.compile(
    r"^\s*\.\. (currentmodule|autofunction|autoclass|autodata|autoexception|py:data|py:function|py:class)"
    r"::\s*([\w.]+)",
    flags=re.M,
)


def _public_names(module: types.ModuleType) -> set[str]:
    """Fully qualified public names, the upper-case constants included."""
    return {f"{module.__name__}.{n}" for n in public_names(module, constants=True)}


def _documented_names() -> dict[str, str]:
    """Fully qualified name -> API page, for every entry directive under docs/api/."""
    documented: dict[str, str] = {}
    for page in sorted((DOCS / "api").glob("*.md")) + sorted((DOCS / "api").glob("*.rst")):
        module = None
        for directive, name in DIRECTIVE.findall(page.read_text()):
            if directive == "currentmodule":
                module = name
            else:
                qualified = name if module is None or name.startswith(module + ".") else f"{module}.{name}"
                documented[qualified] = page.name
    return documented


def test_every_public_name_has_an_api_entry():
    expected = _public_names(jax_dfl)
    for module in SUBMODULES:
        expected |= _public_names(module)
    documented = _documented_names()
    missing = sorted(expected - set(documented))
    assert not missing, f"public names without an entry on the API pages (docs/api/): {missing}"
    stale = sorted(set(documented) - expected)
    assert not stale, f"API entries for names that are not public: {stale}"


def test_each_module_has_its_own_api_page():
    documented = _documented_names()
    for name, page in documented.items():
        module = name.rsplit(".", 1)[0]
        assert page == module.removeprefix("jax_dfl.") + ".md", f"{name} is documented on {page}"
    pages = {p.stem for p in (DOCS / "api").glob("*.md")}
    assert {"index", "jax_dfl", "nn", "inspection", "parallel", "evaluation"} <= pages
    index = (DOCS / "api" / "index.md").read_text()
    for page in pages - {"index"}:
        assert re.search(rf"^{page}$", index, flags=re.M), f"docs/api/{page}.md is not in the API toctree"


def _python_blocks(text: str) -> list[str]:
    blocks = re.findall(r"```(?:python|\{code-cell\}[^\n]*)\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        lines = block.splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        out.append("\n".join(line[indent:] for line in lines))
    return out


def test_guide_snippets_run():
    """The guide pages' snippets run in order in one namespace, after the quick start they build on."""
    namespace: dict = {}
    for page in ["getting_started.md", "conventions.md", "parallel.md"]:
        for code in _python_blocks((DOCS / page).read_text()):
            if page == "getting_started.md" and "num_bins = 16" not in code:
                continue  # the quick start only; the page's other cells run when the site is built
            # The checkify example: valid targets, so nothing to throw.
            code = code.replace("err.throw()", "assert err.get() is None")
            exec(compile(code, f"docs/{page}", "exec"), namespace)
    assert namespace["loss"].shape == ()
    assert namespace["rows"] == slice(0, 64)


def test_box_range_page_prints_what_it_shows():
    """docs/box_range.md: each Python block runs (in order, one namespace) and prints exactly the
    text block that follows it on the page."""
    text = (DOCS / "box_range.md").read_text()
    pairs = re.findall(r"```python\n(.*?)```\n+```text\n(.*?)```", text, flags=re.S)
    assert len(pairs) == 4
    namespace: dict = {}
    for code, shown in pairs:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/box_range.md", "exec"), namespace)
        assert out.getvalue() == shown


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorials_are_myst_notebooks(name):
    text = (DOCS / "tutorials" / f"{name}.md").read_text()
    front_matter = r"---\n.*?format_name: myst\n.*?kernelspec:\n.*?name: python3\n.*?---\n"
    assert re.match(front_matter, text, flags=re.S), f"{name}.md has no MyST notebook front matter"
    assert "```{code-cell} ipython3" in text
    index = (DOCS / "index.md").read_text()
    assert f"tutorials/{name}\n" in index, f"{name} is not in the site's toctree"


def test_data_parallel_tutorial_sets_flags_before_importing_jax():
    first = _python_blocks((DOCS / "tutorials" / "data_parallel.md").read_text())[0]
    flags = first.index("--xla_force_host_platform_device_count=8")
    assert flags < first.index("import jax")


def _load_check_links():
    spec = importlib.util.spec_from_file_location("check_links", DOCS / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_link_checker_reports_missing_files_and_anchors(tmp_path):
    check_links = _load_check_links()
    (tmp_path / "sub").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "_static" / "macros.html").write_text('<link href="{{ pathto(x) }}">')  # not a page
    (tmp_path / "index.html").write_text(
        '<h1 id="top">t</h1><a href="#top">ok</a> <a href="sub/page.html#sec">ok</a>'
        '<a href="https://example.org/missing">external</a> <img src="img.png">'
        '<a href="sub/gone.html">broken</a> <a href="sub/page.html#nope">broken</a>'
        '<img src="missing.png"> <a href="#absent">broken</a>'
    )
    (tmp_path / "sub" / "page.html").write_text('<section id="sec"></section><a href="../index.html">ok</a>')
    problems = check_links.check(tmp_path)
    assert len(problems) == 4, problems
    assert any("sub/gone.html" in p for p in problems)
    assert any("'nope'" in p for p in problems)
    assert any("missing.png" in p for p in problems)
    assert any("'absent'" in p for p in problems)
    assert check_links.main([str(tmp_path)]) == 1
    (tmp_path / "index.html").write_text('<a href="sub/page.html#sec">ok</a>')
    assert check_links.main([str(tmp_path)]) == 0
    assert check_links.main([str(tmp_path / "sub" / "nothing")]) == 2  # no site: not a pass


def test_readme_links_into_the_site_resolve():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into docs/"
    for target in targets:
        assert (ROOT / target).is_file(), f"README links to a missing page: {target}"
