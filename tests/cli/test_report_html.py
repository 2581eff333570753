"""The HTML report renders in a real browser: every image loads, no link is broken.

The browser check needs Chromium from the system packages (`.ci/run` installs it when it can);
without it only the file-level checks run and the browser test is skipped with the reason.
"""
import json
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nnft.config import resolve_config
from nnft.run import run_config

CFG = """
title = "report check"
seed = 4
[[ensemble]]
name = "cos"
arch = "LatticeCosNet"
lattice = { shape = [8, 8] }
widths = [2, 8]
samples = 2000
chunk = 250
params = { m2 = 0.5 }
measure = ["propagator", "four_point", "cluster", "symmetry"]
"""


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src"))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "r"
    run_config(resolve_config(tomllib.loads(CFG)), out, quiet=True)
    return out


def test_report_files_images_and_links(report):
    html = (report / "report.html").read_text()
    p = _Links()
    p.feed(html)
    assert len(p.images) >= 3, p.images  # propagator, m_4, cluster
    for src in p.images + [h for h in p.links if "://" not in h and not h.startswith("#")]:
        f = report / src
        assert f.is_file(), src
    for src in p.images:
        assert (report / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert "<table>" in html and "Verdicts" in html and "consistent" in html


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt-get install "
                                                "chromium): browser rendering not checked")
def test_report_renders_in_headless_chromium(report):
    """Chromium loads report.html; a script added to a copy records every image that failed to
    load (complete with a natural width) after the load event."""
    probe = report / ".probe.html"
    html = (report / "report.html").read_text()
    script = ("<script>window.addEventListener('load', () => {"
              "const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
              ".map(i => i.getAttribute('src'));"
              "document.body.setAttribute('data-images', String(document.images.length));"
              "document.body.setAttribute('data-broken', JSON.stringify(bad));});</script>")
    probe.write_text(html.replace("</body>", script + "</body>"))
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--allow-file-access-from-files", "--virtual-time-budget=5000",
                        "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-broken="[]"' in dom, dom[-2000:]
    n = int(dom.split('data-images="')[1].split('"')[0])
    assert n >= 3
    # companion: a missing image is reported as broken by the same probe
    (report / "plots" / "cos-cluster.png").rename(report / "plots" / "moved.png")
    try:
        r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                            "--allow-file-access-from-files", "--virtual-time-budget=5000",
                            "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                           timeout=120)
        broken = json.loads(r.stdout.split("data-broken=\"")[1].split("\"")[0]
                            .replace("&quot;", '"'))
        assert broken == ["plots/cos-cluster.png"]
    finally:
        (report / "plots" / "moved.png").rename(report / "plots" / "cos-cluster.png")
