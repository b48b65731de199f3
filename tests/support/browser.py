"""A real headless Chromium driven by Selenium, from Debian's packages only.

Selenium Manager never runs: the driver is /usr/bin/chromedriver given as a Service and the
browser binary is set, so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from tests.support.requirements import require_binary


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[object]:
    driver_path = require_binary("chromedriver")
    browser_path = require_binary("chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="crs-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser_path
        for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        # Finding an element waits (up to 5 s) for the page that a click or submit opened.
        driver.implicitly_wait(5)
        try:
            yield driver
        finally:
            driver.quit()
