"""Regenerate docs/page-*.png: the status page in headless chromium.

    PYTHONPATH=. .venv/bin/python -m tests.support.page_screenshots docs
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.browser import PageServer, chromium, page_left
from tests.support.hubs import FakeClock
from tests.support.page_scenes import CODE, Recorder, all_clear, fever, make_page


def full_page(driver: Any, path: Path, width: int, mobile: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 800, "deviceScaleFactor": 1,
                            "mobile": mobile})
    driver.refresh()
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1,
                            "mobile": mobile})
    driver.save_screenshot(str(path))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    clock.at(36 * 3600)
    with chromium() as driver:
        for name, scene, width, mobile in (("all-clear", all_clear, 800, False),
                                           ("fever-alert", fever, 800, False),
                                           ("phone", fever, 360, True)):
            with tempfile.TemporaryDirectory() as tmp:
                page, config = make_page(Path(tmp), clock=clock, submit=Recorder(),
                                         refresh_s=30)
                with PageServer(page) as server:
                    server.call(lambda s=scene, p=page, c=config: s(p, c, clock.now))
                    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
                    driver.delete_all_cookies()
                    driver.get(server.url + "/login")
                    driver.find_element(By.ID, "code").send_keys(CODE)
                    button = driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button")
                    button.click()
                    WebDriverWait(driver, 10).until(page_left(button))
                    driver.find_element(By.CSS_SELECTOR, "form[action='/logout']")
                    full_page(driver, out / f"page-{name}.png", width, mobile)
            print(out / f"page-{name}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
