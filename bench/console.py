"""Console scale: 1,000 hubs to one ``crs-hub console``: its memory and its page time.

What is real: the console is the real process (``python -m daemon.cli console``) with its
config, SQLite history, MQTT subscriptions (four filters per patient and one per hub, as in
production) and tornado web server, on a real mosquitto. One team holds all N patients and one
nurse logs in over HTTP (scrypt check, session cookie), so the ward page lists all N rows.

The hubs: N simulated hubs' documented payloads, published by 8 plain paho clients (not N
connections: the console's cost does not depend on how many sockets the broker has): per hub a
retained ``online`` status with heartbeat, a retained wearable status, a retained alert state,
and for every 10th hub one raised clinical alert (event + state) and for every 7th a technical
one; then ``VITALS`` vitals samples per hub (QoS 1 here, so none is dropped and the history's
size is known). Warm-up ends when the page shows all N hubs online and every open alert.

Figures: the console's VmRSS after warm-up; the median and p95 time of ``GET /`` (the whole
ward, N rows, most urgent first) over ``REQUESTS`` sequential requests, and the median time of
one patient page (24 h chart drawn as SVG from the history, alert history).

Floors, in the same run: RSS of an idle python that imported the console's libraries (tornado,
jinja2, paho-mqtt, pydantic, sqlite3); page time of a tornado server in its own process
returning the same ward HTML bytes from memory (HTTP and transfer cost without the console's
work).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    REPO,
    broker,
    emit_rows,
    idle_python_rss,
    percentile,
    publisher,
    rss_mb,
)
from bench.report import Row
from tests.support.mosquitto import free_port

GOAL_RSS_MB = 150.0
GOAL_PAGE_MS = 500.0
VITALS = 10
REQUESTS = 20
PUBLISHERS = 8
FLOOR_IMPORTS = ("import asyncio, sqlite3, time, tornado.web, jinja2, pydantic, "
                 "paho.mqtt.client; print('up', flush=True); time.sleep(120)")
FLOOR_SERVER = """
import asyncio, sys
import tornado.web
body = open(sys.argv[1], 'rb').read()
class Page(tornado.web.RequestHandler):
    def compute_etag(self):  # as the console's pages: no ETag to hash
        return None
    def get(self):
        self.set_header('Content-Type', 'text/html')
        self.finish(body)
async def main():
    tornado.web.Application([('/', Page)], log_function=lambda handler: None).listen(
        int(sys.argv[2]), '127.0.0.1')
    print('up', flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def floor_rss() -> float:
    return idle_python_rss(FLOOR_IMPORTS)


def write_config(workdir: Path, port: int, hubs: int) -> Path:
    from daemon.console.credentials import hash_password

    patients = "\n".join(f'  {{ hub = "hub-{i:04d}", patient = "p-{i:04d}" }},'
                         for i in range(hubs))
    path = workdir / "console.toml"
    path.write_text(
        f'[console]\ndata_dir = "{workdir / "console-data"}"\nlisten_port = 0\n'
        f"heartbeat_stale_s = 3600\n"
        f'[mqtt]\nport = {port}\nkeepalive_s = 30\n'
        f'[[teams]]\nid = "team-all"\npatients = [\n{patients}\n]\n'
        f'[[nurses]]\nusername = "nurse-bench"\nteam = "team-all"\n'
        f'password_hash = "{hash_password("bench-password")}"\n')
    return path


def start_console(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([PYTHON, "-m", "daemon.cli", "console", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            # Keep reading its log so that it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout or []],  # type: ignore[func-returns-value]
                             daemon=True).start()
            return proc, url
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("console did not start")


def publish_fleet(port: int, hubs: int, now: datetime) -> dict[str, int]:
    """Every hub's retained state, alerts and vitals; returns what the page must show."""
    from daemon.alerts import AlertKind, Severity
    from tests.support.console_hubs import SimHub

    clients = [publisher(port, f"bench-pub-{n}") for n in range(PUBLISHERS)]
    expected = {"alerts": 0, "vitals": 0}

    def work(n: int) -> None:
        client = clients[n]
        for i in range(n, hubs, PUBLISHERS):
            hub = SimHub(port, f"hub-{i:04d}", f"p-{i:04d}")
            hub.client = client  # reuse the publisher's connection (see the module docstring)
            hub.status(heartbeat_at=now)
            hub.device("temp-patch", battery=50 + i % 50)
            if i % 10 == 0:
                hub.raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.4, age_s=i % 3600)
            if i % 7 == 0:
                hub.raise_alert(AlertKind.NO_DATA, Severity.MEDIUM, value=12, unit="min")
            hub.snapshot()
            for k in range(VITALS):
                hub.vitals(now - timedelta(minutes=10 * k), 36.8 + (i + k) % 20 / 10,
                           70 + (i + k) % 40)
                hub.published.clear()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.disconnect()
        client.loop_stop()
    expected["alerts"] = sum(1 for i in range(hubs) if i % 10 == 0) + sum(
        1 for i in range(hubs) if i % 7 == 0)
    expected["vitals"] = hubs * VITALS
    return expected


class Browser:
    """A logged-in HTTP client (cookie jar), like the nurse's browser without rendering."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.web = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.get("login")
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        body = urllib.parse.urlencode({"csrf": token.group(1), "username": "nurse-bench",
                                       "password": "bench-password"}).encode()
        with self.web.open(url + "login", body) as response:
            assert "Log out" in response.read().decode()

    def get(self, path: str) -> str:
        with self.web.open(self.url + path, timeout=60) as response:
            return str(response.read().decode())


def timed(fetch: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(hubs: int, workdir: Path) -> dict[str, Any]:
    floor_mb = floor_rss()
    now = datetime.now(UTC)
    with broker(workdir) as mq:
        proc, url = start_console(write_config(workdir, mq.port, hubs))
        try:
            started = time.monotonic()
            expected = publish_fleet(mq.port, hubs, now)
            nurse = Browser(url)
            deadline = time.monotonic() + 120
            while True:
                page = nurse.get("")
                online = page.count('class="hub hub-online"')
                alerts = page.count('class="alert sev-')
                if online == hubs and alerts == expected["alerts"]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"console shows {online}/{hubs} hubs online, "
                                       f"{alerts}/{expected['alerts']} alerts")
                time.sleep(0.5)
            warm_s = time.monotonic() - started
            time.sleep(1.0)
            rss = rss_mb(proc.pid)
            ward_ms = timed(lambda: nurse.get(""), REQUESTS)
            one = nurse.get("patient/hub-0000/p-0000")
            if "polyline" not in one or "fever" not in one:
                raise RuntimeError("the patient page has no chart or no alert")
            patient_ms = timed(lambda: nurse.get("patient/hub-0000/p-0000"), REQUESTS)
            html = workdir / "ward.html"
            html.write_text(page)
            rss_after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    port = free_port()
    floor_proc = subprocess.Popen([PYTHON, "-c", FLOOR_SERVER, str(html), str(port)],
                                  stdout=subprocess.PIPE, text=True)
    try:
        assert floor_proc.stdout is not None
        floor_proc.stdout.readline()
        plain = urllib.request.build_opener()
        floor_ms = timed(lambda: plain.open(f"http://127.0.0.1:{port}/", timeout=60).read(),
                         REQUESTS)
    finally:
        floor_proc.terminate()
        floor_proc.wait(10)
    return {"hubs": hubs, "rss_mb": rss, "rss_after_pages_mb": rss_after, "floor_mb": floor_mb,
            "ward_p50_ms": percentile(ward_ms, 50), "ward_p95_ms": percentile(ward_ms, 95),
            "patient_p50_ms": percentile(patient_ms, 50),
            "floor_p50_ms": percentile(floor_ms, 50), "page_bytes": len(page.encode()),
            "warm_up_s": round(warm_s, 1), "vitals": expected["vitals"],
            "open_alerts": expected["alerts"]}


def rows(result: dict[str, Any]) -> list[Row]:
    n = f"{result['hubs']:,}"
    rss = max(result["rss_mb"], result["rss_after_pages_mb"])
    return [
        Row(key="console_rss", name=f"Console RSS, {n} hubs", unit="MB", figure=rss,
            floor=result["floor_mb"], goal=f"<= {GOAL_RSS_MB:g} MB", passed=rss <= GOAL_RSS_MB,
            floor_label="idle python that imported tornado, jinja2, paho-mqtt, pydantic",
            note=f"after warm-up ({result['warm_up_s']:g} s: {n} hubs online, "
            f"{result['open_alerts']} open alerts, {result['vitals']:,} vitals samples) and "
            f"after {2 * REQUESTS} page loads", detail=result),
        Row(key="console_page_p50", name=f"Console ward page p50, {n} rows", unit="ms",
            figure=result["ward_p50_ms"], floor=result["floor_p50_ms"],
            goal=f"<= {GOAL_PAGE_MS:g} ms", passed=result["ward_p50_ms"] <= GOAL_PAGE_MS,
            floor_label="tornado serving the same HTML bytes from memory",
            note=f"p95 {result['ward_p95_ms']:.0f} ms; {result['page_bytes'] / 1e6:.1f} MB of "
            f"HTML; one patient page (SVG chart, history) p50 {result['patient_p50_ms']:.1f} ms",
            detail=result),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console")
    parser.add_argument("--quick", action="store_true", help="200 hubs")
    parser.add_argument("--hubs", type=int, default=None)
    args = parser.parse_args(argv)
    hubs = args.hubs or (200 if args.quick else 1000)
    with tempfile.TemporaryDirectory(prefix="crs-bench-console-") as tmp:
        result = measure(hubs, Path(tmp))
    emit_rows(rows(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
