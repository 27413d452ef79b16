"""The report's index.html in headless Chromium: no console errors, and a screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL on file descriptors 3 and 4), which needs no extra package
and reports every kind of page error: uncaught exceptions, ``console.error`` and the
browser's own log (a missing image is ``Failed to load resource``). Skips when Debian's
``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Chromium "
                                "(Debian: apt-get install -y chromium; .ci/run installs it)")


class _Chromium:
    """Minimal DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, width: int = 1280, height: int = 1600) -> None:
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 writes its replies
            a, b = os.dup(to_r), os.dup(from_w)  # out of the way first, in case either is 3 or 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
            preexec_fn=fds, close_fds=False,  # only 3 and 4 are inheritable (PEP 446), the rest close on exec
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._id = 0
        self._q: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_r, 1 << 16)
            if not chunk:
                self._q.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._q.put(json.loads(msg))

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._q.get(timeout=max(0.1, deadline - time.monotonic()))
            if m is None:
                raise RuntimeError("chromium closed the DevTools pipe")
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                m = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            if m is not None:
                self.events.append(m)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_w)


def open_page(path: Path, screenshot: Path | None = None, timeout: float = 60.0) -> list[str]:
    """Load ``path`` in headless Chromium; return its error messages; optionally save a full-page PNG."""
    c = _Chromium()
    try:
        target = c.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = c.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Runtime.enable", "Log.enable", "Page.enable"):
            c.send(dom, session=s)
        c.send("Page.navigate", {"url": path.resolve().as_uri()}, session=s)
        end = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in c.events):
            if time.monotonic() > end:
                raise TimeoutError(f"{path}: page did not finish loading in {timeout} s")
            c.drain(0.1)
        c.drain(0.5)  # late messages
        if screenshot is not None:
            size = c.send("Page.getLayoutMetrics", session=s)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
            png = c.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session=s)["data"]
            screenshot.write_bytes(base64.b64decode(png))
        errors = []
        for e in c.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"]["text"])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return errors
    finally:
        c.close()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from cryo3d.particles import CZII_PARTICLES
    from cryo3d.picks import Picks
    from cryo3d.report import ReportVolume, write_report

    rng = np.random.default_rng(3)
    vol = rng.normal(size=(24, 48, 64)).astype(np.float32)
    n = 24
    xyz = rng.uniform([0, 0, 0], [630, 470, 230], size=(n, 3))
    cls = np.array(CZII_PARTICLES.names, dtype=object)[rng.integers(0, 6, n)]
    gt = Picks(["t"] * n, cls, xyz)
    pred = Picks(["t"] * n, cls, xyz + rng.normal(scale=30, size=(n, 3)), rng.uniform(size=n))
    out = tmp_path_factory.mktemp("browser") / "report"
    write_report(out, [ReportVolume("t", vol, 10.0)], pred, CZII_PARTICLES, gt=gt, thresholds=0.3,
                 history={"val": [{"epoch": 1, "score": 0.2, "per_class": {"ribosome": {"fbeta": 0.3}}}],
                          "train": [{"epoch": 1, "loss": 1.0, "beta": 1.0, "lr": 1e-3}]})
    return out


def test_error_check_sees_a_missing_image_and_a_script_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>nope();</script></body></html>')
    errors = open_page(bad)
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors
    assert any("nope" in e for e in errors), errors


def test_report_opens_in_headless_chromium_without_errors(report_dir, tmp_path):
    shot = tmp_path / "report.png"
    errors = open_page(report_dir / "index.html", screenshot=shot)
    assert errors == []
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] > 1000 and img.shape[1] >= 1000  # the whole page, images included
    assert img[..., :3].std() > 0.05  # not blank
    keep = os.environ.get("CRYO3D_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report_screenshot.png")
