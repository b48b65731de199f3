"""A phone on the home Wi-Fi looking at the patient's page: signs in with the hub's access code,
then loads the status page again and again, as the page's own refresh would (only faster).

The daemon rows measure the daemon with its page in use, not merely listening: every load
renders the templates and the 24-hour SVG chart from the live history.
"""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from daemon.access_code import AccessCode

CODE = "2468-1357-9024"  # the bench hub's access code (a test value, not a secret)


def install_access_code(data_dir: Path) -> None:
    AccessCode.from_code(CODE).save(data_dir)


@dataclass
class Phone:
    base: str  # e.g. http://127.0.0.1:8080
    every_s: float = 2.0
    loads: int = 0
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phone", daemon=True)

    def _get(self, path: str, form: dict[str, str] | None = None) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with self._opener.open(self.base + path, data=data, timeout=10) as response:
            return str(response.read().decode())

    def sign_in(self) -> None:
        match = re.search(r'name="csrf" value="([^"]+)"', self._get("/login"))
        if match is None:
            raise RuntimeError("the sign-in page has no CSRF field")
        page = self._get("/login", {"csrf": match.group(1), "code": CODE})
        if 'action="/logout"' not in page:  # the signed-in page has the sign-out form
            raise RuntimeError("signing in to the status page failed")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                page = self._get("/")
            except OSError as exc:
                self.failures.append(str(exc))
                continue
            # A page that renders but shows no vitals or chart would not be the real load.
            if "<svg" in page and "beats per minute" in page:
                self.loads += 1
            else:
                self.failures.append("the status page showed no chart or heart rate")

    def start(self) -> Phone:
        self.sign_in()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
