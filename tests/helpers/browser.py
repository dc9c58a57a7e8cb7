"""Headless Chromium for the tests of report.html: open a page from a file:// URL, read its
DOM, its console and its pictures, take a screenshot.

Driven with Selenium (the ``test`` extra) over Debian's ``chromium`` and
``chromium-driver`` packages (``apt-get install -y chromium chromium-driver``; CI's
``.ci/run`` installs them), with the flags a closed network needs and a fresh profile.
Selenium is given the driver's path, so it never downloads a browser or a driver.
"""
from __future__ import annotations

import base64
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL = ("apt-get install -y chromium chromium-driver (Debian; CI's .ci/run installs them) "
           "and pip install -e '.[test]' (selenium)")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")

#: what the page tells about itself, read in the browser after every picture decoded
_INSPECT = """
const done = arguments[arguments.length - 1];
const zoom = Array.from(document.querySelectorAll('img.zoom, img.thumb'));
Promise.allSettled(zoom.map(i => i.decode())).then(() => done({
  title: document.title,
  overall: (document.getElementById('overall') || {dataset: {}}).dataset.verdict || null,
  device_rows: Array.from(document.querySelectorAll('tr.device-row')).map(r => r.dataset.device),
  device_sections: Array.from(document.querySelectorAll('details.device')).map(
      d => d.dataset.device),
  failed_gates: Array.from(document.querySelectorAll('tr.gate[data-verdict="fail"]')).map(
      r => r.closest('details.device').dataset.device + ' ' + r.dataset.gate),
  inconclusive_gates: document.querySelectorAll('tr.gate[data-verdict="inconclusive"]').length,
  images: zoom.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                          height: i.naturalHeight})),
  missing: Array.from(document.querySelectorAll('.missing')).map(m => m.textContent),
  scripts: document.scripts.length,
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  width: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
}));
"""


def require_browser() -> tuple[str, str]:
    """``(chromium, chromedriver)`` paths, or skip saying how to install them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(f"no Chromium / ChromeDriver installed: {INSTALL}")
    pytest.importorskip("selenium", reason=f"selenium not installed: {INSTALL}")
    return chromium, driver


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900, dark: bool = False) -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver) with a fresh profile, closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = require_browser()
    profile = tempfile.mkdtemp(prefix="scrfd-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.set_script_timeout(30)
        if dark:
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, page: Path) -> dict[str, Any]:
    """Load ``page`` from its file:// URL; what the DOM shows (:data:`_INSPECT`), plus the
    console messages and whether an alert opened."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(page).resolve().as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    alert = None
    with contextlib.suppress(NoAlertPresentException):
        alert = driver.switch_to.alert.text
    info = driver.execute_async_script(_INSPECT)
    info["alert"] = alert
    info["console"] = [m for m in driver.get_log("browser")]
    return info


def screenshot(driver: Any, path: Path, *, full: bool = True, max_height: int = 12000) -> Path:
    """A PNG of the page (the whole page up to ``max_height`` px, or the window)."""
    params: dict[str, Any] = {"format": "png"}
    if full:
        w = driver.execute_script("return document.documentElement.scrollWidth")
        h = driver.execute_script("return document.documentElement.scrollHeight")
        params.update(captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": w, "height": min(h, max_height), "scale": 1})
    data = driver.execute_cdp_cmd("Page.captureScreenshot", params)["data"]
    Path(path).write_bytes(base64.b64decode(data))
    return Path(path)
