"""Every link of a rendered report resolves: relative files exist and #anchors name an element of their page.

``broken_links(page)`` reads one HTML page (stdlib ``html.parser``) and returns each ``href`` / ``src`` that does
not resolve: a relative path that does not exist next to the page, or a fragment that names no ``id`` (or
``<a name>``) of the page it points to (percent-decoded as a browser does when the raw fragment matches nothing).
Links with a scheme (``https:``, ``data:``, ``mailto:``...) are not followed. ``markdown_broken_links`` does the
same for the ``[text](target)`` links of a Markdown file (``reports/summary.md``, README). ``broken_report_links``
checks every ``*.html`` under a directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


class _Page(HTMLParser):
    """Collects the link targets (href, src) and the anchor names (id, a[name]) of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record this tag's link attributes and anchor names."""
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value)
            elif name == "id" or (name == "name" and tag == "a"):
                self.anchors.add(value)


def _parse(path: Path) -> tuple[tuple[str, ...], frozenset[str]]:
    """(links, anchors) of an HTML page (read once per version of the file)."""
    stat = path.stat()
    return _parse_version(path, stat.st_mtime_ns, stat.st_size)


@cache
def _parse_version(path: Path, mtime_ns: int, size: int) -> tuple[tuple[str, ...], frozenset[str]]:
    """(links, anchors) of one version of an HTML page."""
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return tuple(page.links), frozenset(page.anchors)


def _has_anchor(path: Path, fragment: str) -> bool:
    """True when the page at `path` has an element named by `fragment` (raw, then percent-decoded)."""
    if path.suffix.lower() not in (".html", ".htm"):
        return True  # fragments of other files (notebooks, Markdown) are not checked
    anchors = _parse(path)[1]
    return fragment in anchors or unquote(fragment) in anchors


def resolve(target: str, page: Path) -> str | None:
    """Why `target` (a link on `page`) does not resolve, or None when it does or is not checked (has a scheme)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    if not parts.path:
        if parts.fragment and not _has_anchor(page, parts.fragment):
            return f"#{parts.fragment}: no element with that id on the page"
        return None
    dest = (page.parent / unquote(parts.path)).resolve()
    if not dest.exists():
        return f"{parts.path}: no such file"
    if parts.fragment and dest.is_file() and not _has_anchor(dest, parts.fragment):
        return f"{parts.path}#{parts.fragment}: no element with that id in {dest.name}"
    return None


def _report(targets: Iterable[str], page: Path) -> list[str]:
    """The broken links among `targets`, each with its reason (each target once)."""
    out = []
    for target in dict.fromkeys(targets):
        why = resolve(target, page)
        if why is not None:
            out.append(why)
    return out


def broken_links(page: Path) -> list[str]:
    """The href/src links of an HTML page that do not resolve, each with its reason."""
    return _report(_parse(page.resolve())[0], page.resolve())


def markdown_broken_links(page: Path) -> list[str]:
    """The [text](target) and image links of a Markdown file that do not resolve, each with its reason."""
    text = page.read_text(encoding="utf-8")
    targets = [a or b for a, b in MARKDOWN_LINK.findall(text)]
    return _report(targets, page.resolve())


def broken_report_links(root: Path) -> dict[str, list[str]]:
    """Every rendered report (*.html) under `root` with its broken links (only pages that have some)."""
    out = {}
    for page in sorted(root.rglob("*.html")):
        broken = broken_links(page)
        if broken:
            out[str(page.relative_to(root))] = broken
    return out
