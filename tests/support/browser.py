"""A real headless browser (Debian's chromium through its chromium-driver) and a status page
served on its own event-loop thread, so a blocking Selenium test can drive it.

Nothing here downloads a browser: Selenium is pointed at /usr/bin/chromedriver and
/usr/bin/chromium explicitly, so Selenium Manager never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import re
import shutil
import ssl
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon.status_page import StatusPage
from tests.support.requirements import integration_required

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if integration_required():
        pytest.fail(f"{reason} but CRS_REQUIRE_INTEGRATION=1")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(width: int = 1000, height: int = 900) -> Iterator[Any]:
    """A headless chromium with a fresh profile, torn down afterwards."""
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="crs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def phone_width(driver: Any, width: int = 360, height: int = 780) -> None:
    """Emulate a phone's viewport (mobile: the page's viewport meta applies)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 2,
                            "mobile": True})


def no_horizontal_scroll(driver: Any) -> tuple[int, int]:
    sizes = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    return int(sizes[0]), int(sizes[1])


class PageServer:
    """Serves a StatusPage on 127.0.0.1 from an event loop in a background thread."""

    def __init__(self, page: StatusPage) -> None:
        self.page = page
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        self.run(self.page.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.page.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the page's loop (the page is single-threaded like the hub)."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.page.port}"


class RawClient:
    """Plain HTTP with a cookie jar: for what a browser would never send (a POST without the
    CSRF token). Redirects are not followed, so each answer's status can be asserted."""

    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, form: dict[str, str] | None = None
                ) -> tuple[int, str, dict[str, str]]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def csrf(self, path: str) -> str:
        status, body, _ = self.request("GET", path)
        assert status == 200, (path, status)
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    def sign_in(self, code: str) -> int:
        return self.request("POST", "/login", {"csrf": self.csrf("/login"), "code": code})[0]


def page_left(element: Any) -> Callable[[Any], bool]:
    """A WebDriverWait condition: ``element``'s page has been replaced. Like Selenium's
    staleness_of, but chromium sometimes answers the check for a node of the old document with
    "Node with given id does not belong to the document" (a plain WebDriverException) instead of
    a stale-element error: that too means the old page is gone."""
    from selenium.common.exceptions import WebDriverException

    def gone(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False

    return gone
