"""The built docs render their math offline, checked in a real browser.

Builds the site with `mkdocs build --strict`, serves it on 127.0.0.1 and loads
the math page in headless Chromium. MathJax, copied into the site at build time
(docs/offline_math.py), must have typeset every formula: MathJax's output
elements are there and no raw `\\(` is left. The screenshot goes to
`$DOCS_SCREENSHOT_DIR` (CI keeps it, see .ci/run) or to the test's tmp folder.
"""

import functools
import http.server
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import threading

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the site does not depend on the backend; built once, in the "
        "TensorFlow run",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("mkdocs") is None
        or importlib.util.find_spec("mathjax") is None,
        reason='needs the docs extra: pip install -e ".[docs]"',
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="needs Chromium (Debian: apt-get install chromium)",
    ),
]


def chromium(profile, *arguments):
    # Headless, and nothing that reaches outside this machine.
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        # Lets MathJax finish typesetting before the page is read.
        "--virtual-time-budget=15000",
    ]
    result = subprocess.run(
        [CHROMIUM, *flags, *arguments], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_math_page_renders_offline_in_chromium(site, tmp_path):
    folder, url = site
    page = (folder / "math" / "index.html").read_text()
    # The page loads MathJax from the site itself, and from nowhere else.
    assert 'src="../javascripts/mathjax/tex-mml-chtml.js"' in page
    assert "cdn." not in page
    assert (folder / "javascripts" / "mathjax" / "tex-mml-chtml.js").is_file()
    formulas = page.count('class="arithmatex"')
    assert formulas > 20

    dom = chromium(tmp_path / "profile", "--dump-dom", f"{url}/math/")
    # One MathJax container per formula, and no TeX left unrendered.
    assert dom.count("<mjx-container") >= formulas
    assert "\\(" not in dom and "\\[" not in dom
    assert "<mjx-merror" not in dom  # MathJax's mark for TeX it could not parse

    screenshots = pathlib.Path(os.environ.get("DOCS_SCREENSHOT_DIR", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)
    picture = screenshots / "math_page.png"
    chromium(
        tmp_path / "profile",
        "--window-size=1200,1600",
        f"--screenshot={picture}",
        f"{url}/math/",
    )
    assert picture.stat().st_size > 50_000  # a rendered page, not a blank one
