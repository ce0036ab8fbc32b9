"""The book builds with zero warnings and reads with no network.

1. `python -m blender_lib.book_assets` (local MathJax, RequireJS, ipywidgets embed script), then
   `jupyter-book build <repo> -W -n --keep-going --all` exits 0 and writes `_build/html/index.html`
   (`--all` rereads and rewrites every page: an incremental build with no changed page skips copying
   changed static files, and a stale page could hide a warning);
2. no built page loads a script, stylesheet, image or frame from an http(s) URL, every local script or
   stylesheet it names exists, and pages with ipywidgets load the local embed script;
3. if Debian's `chromium` is installed, headless Chromium with networking blocked opens pages of the
   built book, saves screenshots to `_build/screenshots/`, checks that MathJax typeset the intro's
   formula and, where a chapter stores widgets, that they render.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
HTML_DIR = REPO / "_build" / "html"
SCREENSHOT_DIR = REPO / "_build" / "screenshots"
# Elements whose URL attribute the browser fetches by itself when the page loads.
FETCHED = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src", "video": "src", "audio": "src"}


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def venv_tool(name: str) -> str:
    """A console script of the running interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed next to {sys.executable} nor on PATH")
    return found


@pytest.fixture(scope="module")
def built_html() -> Path:
    """Fetch the offline assets, build the book once for this module, return _build/html."""
    assets = subprocess.run(
        [sys.executable, "-m", "blender_lib.book_assets"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert assets.returncode == 0, f"book_assets failed:\n{tail(assets.stdout + assets.stderr)}"
    build = subprocess.run(
        [venv_tool("jupyter-book"), "build", str(REPO), "-W", "-n", "--keep-going", "--all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, f"jupyter-book build failed (warnings are errors):\n{tail(build.stdout + build.stderr)}"
    assert (HTML_DIR / "index.html").is_file()
    return HTML_DIR


class FetchedUrls(HTMLParser):
    """Collects the URLs a page makes the browser fetch (script src, link href, img src, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = FETCHED.get(tag)
        if wanted is None:
            return
        values = dict(attrs)
        if tag == "link" and not ({"stylesheet", "preload", "icon", "modulepreload"} & set((values.get("rel") or "").split())):
            return  # rel="canonical", "next", ... are navigation, not fetched
        url = values.get(wanted)
        if url:
            self.urls.append((tag, url))


def fetched_urls(page: Path) -> list[tuple[str, str]]:
    parser = FetchedUrls()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.urls


def is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in {"http", "https"}


def built_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the book (the theme's _static/ assets left out)."""
    return [p for p in sorted(html_dir.rglob("*.html")) if "_static" not in p.relative_to(html_dir).parts]


def test_build_writes_index(built_html: Path) -> None:
    assert (built_html / "index.html").is_file()


def test_every_chapter_has_its_page_with_stored_outputs(built_html: Path) -> None:
    """The book is built from the stored executed notebooks, without re-executing any (a machine
    without the real data gets the stored outputs of chapters 6, 8 and 9 too)."""
    from blender_lib.runner import list_chapters

    chapters = list_chapters()
    assert len(chapters) == 10
    for notebook in chapters:
        page = built_html / "notebooks" / f"{notebook.stem}.html"
        assert page.is_file(), f"no page for {notebook.stem}"
        assert 'class="cell_output' in page.read_text(encoding="utf-8"), f"{page.name} shows no stored output"
    assert (built_html / "_static" / "vendor" / "mathjax" / "tex-chtml.js").is_file()


def test_every_page_loads_only_local_assets(built_html: Path) -> None:
    pages = built_pages(built_html)
    assert len(pages) >= 3, f"too few pages built: {pages}"
    remote, missing = [], []
    for page in pages:
        for tag, url in fetched_urls(page):
            name = page.relative_to(built_html)
            if is_remote(url):
                remote.append(f"{name}: <{tag}> {url}")
                continue
            if tag in {"script", "link"} and not urlsplit(url).scheme:
                target = (page.parent / unquote(urlsplit(url).path)).resolve()
                if not target.is_file():
                    missing.append(f"{name}: <{tag}> {url}")
    assert not remote, "pages load assets from the network:\n" + "\n".join(remote)
    assert not missing, "pages name local assets that were not built:\n" + "\n".join(missing)


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_pages(html_dir: Path) -> list[Path]:
    """Built pages that carry ipywidgets state (a chapter stored with live widgets)."""
    return [p for p in built_pages(html_dir) if WIDGET_STATE in p.read_text(encoding="utf-8")]


def test_widget_pages_use_local_embed_script(built_html: Path) -> None:
    for page in widget_pages(built_html):
        scripts = [url for tag, url in fetched_urls(page) if tag == "script"]
        for needed in ("_static/widgets-offline.js", "vendor/requirejs/require.js", "vendor/html-manager/embed-amd.js"):
            assert any(needed in url for url in scripts), f"{page.name} does not load {needed}: {scripts}"


def test_math_pages_use_local_mathjax(built_html: Path) -> None:
    intro = (built_html / "book" / "intro.html").read_text(encoding="utf-8")
    scripts = [url for tag, url in fetched_urls(built_html / "book" / "intro.html") if tag == "script"]
    assert any("_static/vendor/mathjax/tex-chtml.js" in url for url in scripts), scripts
    assert "\\sum_{j" in intro, "the intro should carry the max-logits formula for MathJax to typeset"


# --- headless browser -------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    # No network: every host name fails to resolve, so only file:// pages and their local assets load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--window-size=1280,1000",
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("Debian's `chromium` is not on PATH (apt-get install chromium); skipping the browser check")
    return found


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def screenshot(chromium: str, profile: Path, page: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    proc = run_chromium(chromium, profile, f"--screenshot={out}", page.as_uri())
    assert out.is_file() and out.stat().st_size > 10_000, f"no screenshot of {page}:\n{tail(proc.stderr)}"


def dump_dom(chromium: str, profile: Path, page: Path) -> str:
    proc = run_chromium(chromium, profile, "--dump-dom", page.as_uri())
    assert proc.returncode == 0 and proc.stdout, f"chromium --dump-dom failed on {page}:\n{tail(proc.stderr)}"
    return proc.stdout


def test_browser_renders_offline_with_mathjax(built_html: Path, chromium: str, tmp_path: Path) -> None:
    intro = built_html / "book" / "intro.html"
    chapter = built_html / "notebooks" / "00_setup.html"
    for page in (intro, chapter) if chapter.is_file() else (intro,):
        screenshot(chromium, tmp_path / "profile", page, SCREENSHOT_DIR / f"{page.stem}.png")
    dom = dump_dom(chromium, tmp_path / "profile", intro)
    assert "<mjx-container" in dom, "MathJax did not typeset the intro's formula (is the local MathJax served?)"
    assert 'jax="CHTML"' in dom, "MathJax did not produce CHTML output"
    assert "Blender Book" in dom


def test_browser_renders_widgets_offline(built_html: Path, chromium: str, tmp_path: Path) -> None:
    pages = widget_pages(built_html)
    if not pages:
        pytest.skip("no built page stores ipywidgets state yet")
    dom = dump_dom(chromium, tmp_path / "profile", pages[0])
    body = dom.split("</head>", 1)[-1]
    assert re.search(r'class="[^"]*\bjupyter-widgets\b', body), f"the widgets of {pages[0].name} did not render offline"
    screenshot(chromium, tmp_path / "profile", pages[0], SCREENSHOT_DIR / f"{pages[0].stem}.png")
