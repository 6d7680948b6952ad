"""report.html in a real browser (headless Chromium, Debian's ``chromium``; skipped where none is
installed): the page loads without a console error, every image on it loads, and a screenshot
is written (``SPPDET_SCREENSHOT=path`` keeps a copy to look at)."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed (apt-get install chromium)")

# Injected at the top of a copy of the page (beside it, so every relative link is the same):
# records errors and console.error calls, turns lazy images eager, and after load writes what
# it saw into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const __ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); __ce(...a); };
document.addEventListener('DOMContentLoaded', () => document.querySelectorAll('img').forEach(i => i.loading = 'eager'));
window.addEventListener('load', () => setTimeout(() => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const pre = document.createElement('pre'); pre.id = '__probe';
  pre.textContent = JSON.stringify({errors: window.__errors, images: imgs});
  document.body.appendChild(pre);
}, 300));
</script>"""


def _chromium(*args, timeout=120):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def report(tmp_path):
    from sppdet.datasets import load_dataset
    from sppdet.datasets.synth import write_synthetic
    from sppdet.evaluation.analysis import analyze

    ds = load_dataset(write_synthetic(tmp_path / "data", 6, seed=2), "all")
    rng = np.random.default_rng(0)
    dets = []
    for r in ds.records:
        for box, lab in zip(r.boxes, r.labels):  # near-hits, and some misplaced boxes
            jitter = rng.normal(0, 6, 4)
            dets.append({"image": r.path.name, "label": lab, "score": float(rng.uniform(0.3, 1)),
                         "bbox": list(np.clip(box + jitter, 0, [r.width - 1, r.height - 1] * 2))})
        for _ in range(4):
            x, y = rng.uniform(0, r.width - 60), rng.uniform(0, r.height - 60)
            dets.append({"image": r.path.name, "label": ds.classes[int(rng.integers(len(ds.classes)))],
                         "score": float(rng.uniform(0, 0.6)), "bbox": [x, y, x + 50, y + 50]})
    analyze(ds.records, dets, ds.classes, tmp_path / "analysis", max_gallery=3, similar=[["disc", "ring"]])
    return tmp_path / "analysis" / "report.html"


def test_report_loads_in_chromium_with_every_image(report, tmp_path):
    probe = report.with_name("__probe.html")
    html = report.read_text(encoding="utf-8")
    probe.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    r = _chromium("--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    probe.unlink()
    found = re.search(r'<pre id="__probe">(.*?)</pre>', r.stdout, flags=re.S)
    assert found, f"the page did not finish loading:\n{r.stderr[-2000:]}"
    import html as h

    seen = json.loads(h.unescape(found.group(1)))
    assert seen["errors"] == []
    assert len(seen["images"]) >= 5 and all(i["ok"] for i in seen["images"]), \
        [i["src"] for i in seen["images"] if not i["ok"]]
    # the same on the page itself: no console error or failed resource in Chromium's own log
    shot = tmp_path / "report.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", "--virtual-time-budget=15000", report.as_uri())
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "ERR_FILE_NOT_FOUND" in ln]
    assert console == [], console
    assert shot.is_file() and shot.stat().st_size > 10000
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2400, 1280) and img.std() > 10  # not a blank page
    if os.environ.get("SPPDET_SCREENSHOT"):
        shutil.copy(shot, os.environ["SPPDET_SCREENSHOT"])
