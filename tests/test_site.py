"""The built book, opened page by page in headless Chromium as a reader would see it.

Every HTML page under ``_build/html`` is served from 127.0.0.1 and loaded; on each page:

* it loads with HTTP 200, and no request fails, answers >= 400, or leaves 127.0.0.1 (the site must
  work offline: anything else is aborted and reported);
* no ``<img>`` is broken (naturalWidth 0 after load);
* math is typeset by MathJax (one ``mjx-container`` per math element, no TeX error);
* embedded ipywidgets render;
* the console shows no error beyond ``CONSOLE_ALLOWLIST``, and no script throws.

A full-page screenshot of each page goes to ``_build/screenshots/``. Needs ``make book`` first (the
Makefile builds before testing) and Debian's ``chromium`` (``make sysdeps``).
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import SITE_DIR

pytestmark = pytest.mark.site

SCREENSHOTS = SITE_DIR.parent / "screenshots"

# Directories of the built site that hold no pages a reader visits:
#   _static   theme/vendored assets; its *.html files are webpack template fragments, not pages
#   _sources  the raw .ipynb / .md sources offered for download
#   _images   figures, checked through the pages that show them
SKIP_DIRS = {"_static", "_sources", "_images"}

# Console errors that are not the book's fault. Each entry: (regex on the message, why it is allowed).
CONSOLE_ALLOWLIST: list[tuple[str, str]] = []

# Non-HTTP schemes a page may use without touching the network.
LOCAL_SCHEMES = {"data", "blob", "about"}


def site_pages() -> list[str]:
    """Every page of the built site, as paths relative to its root (empty when it is not built)."""
    if not SITE_DIR.is_dir():
        return []
    pages = []
    for path in sorted(SITE_DIR.rglob("*.html")):
        rel = path.relative_to(SITE_DIR)
        if rel.parts[0] not in SKIP_DIRS:
            pages.append(rel.as_posix())
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> Iterator[str]:
    """Serve the built book on 127.0.0.1 at a free port for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.scheme in {"http", "https"} and parts.hostname == "127.0.0.1")


def _allowed(message: str) -> bool:
    return any(re.search(pattern, message) for pattern, _reason in CONSOLE_ALLOWLIST)


# Waits for every <img> (lazy ones are switched to eager first) and returns the broken ones.
_BROKEN_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === "lazy") img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.complete ? null
    : new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  return imgs.filter(img => img.naturalWidth === 0).map(img => img.currentSrc || img.src);
}
"""

# Math elements as Sphinx/MyST emit them, before MathJax replaces their text.
_MATH_JS = """
() => document.querySelectorAll("span.math, div.math, .math.notranslate").length
"""

_MATHJAX_JS = """
async () => {
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > 20000) return {error: "MathJax never started"};
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  if (MathJax.typesetPromise) await MathJax.typesetPromise();
  return {
    containers: document.querySelectorAll("mjx-container").length,
    errors: Array.from(document.querySelectorAll("mjx-merror"))
      .map(e => e.getAttribute("data-mjx-error") || e.textContent),
  };
}
"""


@pytest.mark.parametrize("page_path", site_pages() or ["<no site built>"])
def test_page(page_path: str, site_url: str, browser) -> None:
    if page_path == "<no site built>":
        pytest.fail(f"no pages under {SITE_DIR}: build the book first with `make book`")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    off_site: list[str] = []
    failed: list[str] = []
    bad_status: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []

    def route(r):
        if _is_local(r.request.url):
            r.continue_()
        else:  # never reach the network; the request is reported below
            off_site.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on(
        "requestfailed",
        lambda req: None if not _is_local(req.url) else failed.append(f"{req.url} ({req.failure})"),
    )
    page.on("response", lambda resp: bad_status.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None)
    page.on(
        "console",
        lambda msg: console_errors.append(msg.text) if msg.type == "error" and not _allowed(msg.text) else None,
    )
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    try:
        response = page.goto(f"{site_url}/{page_path}", wait_until="load")
        assert response is not None and response.status == 200, f"{page_path}: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")

        broken = page.evaluate(_BROKEN_IMAGES_JS)
        assert not broken, f"{page_path}: broken images {broken}"

        n_math = page.evaluate(_MATH_JS)
        if n_math:
            typeset = page.evaluate(_MATHJAX_JS)
            assert "error" not in typeset, f"{page_path}: {typeset.get('error')}"
            assert typeset["containers"] >= n_math, (
                f"{page_path}: {n_math} math elements but {typeset['containers']} typeset by MathJax"
            )
            assert not typeset["errors"], f"{page_path}: TeX errors {typeset['errors']}"

        if page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count():
            n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
            page.wait_for_selector(".jupyter-widgets", timeout=20000)
            page.wait_for_load_state("networkidle")
            rendered = page.locator(".jupyter-widgets").count()
            assert rendered >= n_views, f"{page_path}: {n_views} widget views, {rendered} rendered"
            assert "Error displaying widget" not in page.content(), f"{page_path}: a widget failed to render"

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / (page_path.removesuffix(".html").replace("/", "__") + ".png")
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()

    assert not off_site, f"{page_path}: requests off 127.0.0.1 (the site must work offline): {off_site}"
    assert not failed, f"{page_path}: failed requests {failed}"
    assert not bad_status, f"{page_path}: error responses {bad_status}"
    assert not page_errors, f"{page_path}: uncaught script errors {page_errors}"
    assert not console_errors, f"{page_path}: console errors {console_errors}"


# --- Static checks of the HTML (no browser) --------------------------------------------------------

_EXTERNAL_ASSET = re.compile(
    r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["'](?:https?:)?//[^"']+["']"""
    r"""|<link\b(?=[^>]*\brel=["'](?:stylesheet|preload|prefetch|modulepreload|icon|shortcut icon)["'])"""
    r"""[^>]*\bhref=["'](?:https?:)?//[^"']+["']""",
    re.IGNORECASE,
)
_EXTERNAL_CSS = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*["']?(?:https?:)?//""", re.IGNORECASE)


def test_no_external_assets_in_html(site_dir: Path) -> None:
    """No page pulls a script, style sheet, font or image from another host."""
    offenders = []
    for path in sorted(site_dir.rglob("*.html")):
        for match in _EXTERNAL_ASSET.finditer(path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(f"{path.relative_to(site_dir)}: {match.group(0)[:160]}")
    assert not offenders, "external assets:\n" + "\n".join(offenders)


def test_no_external_urls_in_css(site_dir: Path) -> None:
    offenders = []
    for path in sorted(site_dir.rglob("*.css")):
        text = path.read_text(encoding="utf-8", errors="replace")
        # Comments may mention URLs (licence headers); only live rules count.
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
        if _EXTERNAL_CSS.search(text):
            offenders.append(str(path.relative_to(site_dir)))
    assert not offenders, f"style sheets referring to other hosts: {offenders}"


def test_site_has_the_intro(site_dir: Path) -> None:
    """The landing page is the intro, with its title, figure and bibliography link."""
    intro = (site_dir / "book" / "intro.html").read_text(encoding="utf-8")
    assert "Dense Associative Memory is Robust to Adversarial Inputs, reproduced" in intro
    assert "<img" in intro, "the intro's MNIST figure is missing"
    assert 'href="bibliography.html"' in intro
    assert "book/intro.html" in (site_dir / "index.html").read_text(encoding="utf-8")
