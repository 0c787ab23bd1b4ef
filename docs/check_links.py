"""Check the built HTML for broken internal links and missing images (stdlib only).

    python docs/check_links.py [docs/_build/html]

Walks every page (``.html`` file outside ``_static/``) of the build directory and checks each
``href`` and ``src`` that points inside the site: the file must exist, and a ``#fragment`` must be
an ``id`` (or an ``<a name>``) in the target page. External links (``http:``, ``https:``,
``mailto:``, ...) are skipped. Exits 1 and lists every broken link, 0 when there is none.
"""

from __future__ import annotations

import pathlib
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

LINK_ATTRIBUTES = {"href", "src"}


class _Page(HTMLParser):
    """The ids and the internal links of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, int, str]] = []  # (url, line, tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in LINK_ATTRIBUTES and not (tag == "link" and ("rel", "preconnect") in attrs):
                self.links.append((value, self.getpos()[0], tag))

    handle_startendtag = handle_starttag


def _parse(path: pathlib.Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def _site_pages(root: pathlib.Path) -> list[pathlib.Path]:
    # The theme copies its Jinja macro files (``_static/*.html``) as they are: not pages.
    return [p for p in sorted(root.rglob("*.html")) if p.relative_to(root).parts[0] != "_static"]


def check(root: pathlib.Path) -> list[str]:
    """Every broken internal link under ``root``, as ``page:line: message`` strings."""
    root = root.resolve()
    pages = {path: _parse(path) for path in _site_pages(root)}
    problems = []
    for path, page in pages.items():
        for url, line, tag in page.links:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("javascript:", "data:")):
                continue  # external (http, https, mailto, ...) or inline
            where = f"{path.relative_to(root)}:{line}"
            if parts.path:
                target = (path.parent / unquote(parts.path)).resolve()
                if parts.path.endswith("/"):
                    target = target / "index.html"
            else:
                target = path  # "#anchor" on the same page
            if not target.is_relative_to(root):
                problems.append(f"{where}: <{tag}> {url!r} points outside the site")
                continue
            if not target.is_file():
                problems.append(f"{where}: <{tag}> {url!r}: missing file {target.relative_to(root)}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                target_page = pages.get(target) or _parse(target)
                if fragment not in target_page.ids:
                    page_name = target.relative_to(root)
                    problems.append(f"{where}: <{tag}> {url!r}: no id {fragment!r} in {page_name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = pathlib.Path(args[0] if args else pathlib.Path(__file__).parent / "_build" / "html")
    if not root.is_dir() or not _site_pages(root):
        print(f"no built site at {root}: run sphinx-build first", file=sys.stderr)
        return 2
    problems = check(root)
    pages = len(_site_pages(root))
    for problem in problems:
        print(problem)
    print(f"{pages} pages checked, {len(problems)} broken internal link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
