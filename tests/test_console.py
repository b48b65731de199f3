"""The console end to end: a real mosquitto, >= 50 simulated hubs (plain paho clients publishing
the documented payloads), `crs-hub console` as its own process, and a real headless Chromium.

What a nurse sees: patients in the order that says who needs action, only their team's, a hub
killed without DISCONNECT shown offline within its keepalive window, a duplicate event shown
once; what they do: log in, acknowledge with a note, and the ack arrives at a real subscriber
on .../alert/ack/<nurse> with the nurse as actor.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.console.credentials import hash_password
from daemon.payloads import Tier
from tests.support.browser import chromium as _chromium
from tests.support.console_hubs import SimHub
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
N_HUBS = 50  # team-a: hubs 00..44, team-b: 45..49
PASSWORD = "ward-7-night"
SCREENSHOTS = os.environ.get("CRS_CONSOLE_SCREENSHOTS")  # a directory: save docs screenshots


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """The shared headless Chromium, wide enough for the ward table; finding an element waits
    (up to 5 s) for the page that a click or a submit opened."""
    with _chromium(1400, 1000) as driver:
        driver.implicitly_wait(5)
        yield driver


def until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def hub_id(i: int) -> str:
    return f"hub-s{i:02d}"


def patient_id(i: int) -> str:
    return f"p-s{i:02d}"


def write_config(tmp_path: Path, port: int, hubs: int = N_HUBS,
                 keepalive_stale_s: int = 90) -> Path:
    lines = [
        "[console]", f'data_dir = "{tmp_path / "console-data"}"', "listen_port = 0",
        f"heartbeat_stale_s = {keepalive_stale_s}",
        "refresh_s = 0",  # the tests reload on their own; a timed reload would race them
        "[mqtt]", f"port = {port}", 'username = "console-1"', "keepalive_s = 5",
        "reconnect_max_s = 1",
    ]
    for team, members in (("team-a", range(0, hubs - 5)), ("team-b", range(hubs - 5, hubs))):
        lines += ["[[teams]]", f'id = "{team}"', "patients = ["]
        lines += [f'  {{ hub = "{hub_id(i)}", patient = "{patient_id(i)}" }},' for i in members]
        lines += ["]"]
    hashed = hash_password(PASSWORD)
    for user, team in (("nurse-ana", "team-a"), ("nurse-ben", "team-b")):
        lines += ["[[nurses]]", f'username = "{user}"', f'team = "{team}"',
                  f'password_hash = "{hashed}"']
    path = tmp_path / "console.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ConsoleProcess:
    process: subprocess.Popen[str]
    url: str
    output: list[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_console(config: Path, *extra: str) -> ConsoleProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "console", "--config", str(config), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    output: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if "console: listening on " in line:
                url.append(line.split("listening on ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if "--watch" not in extra:
        assert ready.wait(30) and url, f"console did not start: {output}"
    return ConsoleProcess(process, url[0] if url else "", output)


class AckSubscriber:
    """A real MQTT subscriber on every ack (or receipt) topic: what a hub would receive."""

    def __init__(self, port: int, topic: str = "crs/v1/+/+/alert/ack/#") -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"listener-{topic.rsplit('/', 2)[-2]}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Ward:
    hubs: list[SimHub]
    alerts: dict[str, Any]
    console: ConsoleProcess
    killable: subprocess.Popen[str]
    broker: Mosquitto


def build_ward(mosquitto: Mosquitto) -> tuple[list[SimHub], dict[str, Any]]:
    """50 hubs; a known set of situations, and the order the page must show them in."""
    # Hub 6 is the one that gets killed: it runs in its own process (see the fixture), so its
    # in-process stand-in never connects (one client id, one connection).
    hubs = [SimHub(mosquitto.port, hub_id(i), patient_id(i)) for i in range(N_HUBS)]
    for i, hub in enumerate(hubs):
        if i != 6:
            hub.start()
    for i, hub in enumerate(hubs):
        if i == 6:
            continue
        hub.status(therapy_day=i % 14 if i < 10 else None)
        hub.device("temp-patch", battery=15 if i == 4 else 90)
        hub.snapshot()
    alerts = {
        "crit_team": hubs[7].raise_alert(AlertKind.FEVER_TACHYCARDIA, Severity.CRITICAL,
                                         tier=Tier.CARE_TEAM, value=38.9, age_s=60),
        "crit_old": hubs[3].raise_alert(AlertKind.HIGH_FEVER, Severity.CRITICAL, value=39.2,
                                        age_s=1800),
        "crit_new": hubs[2].raise_alert(AlertKind.HIGH_FEVER, Severity.CRITICAL, value=39.1,
                                        age_s=300),
        "high": hubs[1].raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.3, age_s=600),
        "medium": hubs[9].raise_alert(AlertKind.TACHYCARDIA, Severity.MEDIUM, value=112,
                                      unit="bpm", age_s=900),
        "no_data": hubs[5].raise_alert(AlertKind.NO_DATA, Severity.MEDIUM, value=12,
                                       unit="min", age_s=700),
        "battery": hubs[4].raise_alert(AlertKind.BATTERY_LOW, Severity.LOW, value=15, unit="%",
                                       age_s=100),
        "acked": hubs[8].raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.2, age_s=2000),
        "team_b": hubs[47].raise_alert(AlertKind.HIGH_FEVER, Severity.CRITICAL, value=39.5),
    }
    hubs[8].acknowledge(alerts["acked"], "nurse-cleo")
    return hubs, alerts


@pytest.fixture
def ward(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Ward]:
    hubs, alerts = build_ward(mosquitto)
    killable = subprocess.Popen(
        [sys.executable, "-m", "tests.support.console_hubs", str(mosquitto.port), hub_id(6),
         patient_id(6), "2"], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killable.stdout is not None and killable.stdout.readline().strip() == "ready"
    console = start_console(write_config(tmp_path, mosquitto.port))
    try:
        yield Ward(hubs, alerts, console, killable, mosquitto)
    finally:
        console.stop()
        killable.kill()
        killable.wait()
        for i, hub in enumerate(hubs):
            if i != 6:
                hub.stop()


def login(driver: Any, url: str, user: str = "nurse-ana", password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    # The click returns before the next page is in; wait for it (logged in, or refused).
    assert until(lambda: driver.find_elements(By.CSS_SELECTOR, "#logout, #login-error"), 10)


def page_order(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.get_attribute("data-patient").split("/")[1]
            for row in driver.find_elements(By.CSS_SELECTOR, "#ward tbody tr")]


def reload_until(driver: Any, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    def check() -> Any:
        driver.refresh()
        return predicate()
    return until(check, timeout, step=0.2)


EXPECTED_TOP = [patient_id(i) for i in (7, 3, 2, 1, 9, 6, 5, 4, 8)]


def test_page_orders_patients_acks_with_identity_and_shows_a_killed_hub_offline(
        ward: Ward) -> None:
    from selenium.webdriver.common.by import By

    listener = AckSubscriber(ward.broker.port)
    try:
        with chromium() as driver:
            driver.get(ward.console.url)
            assert driver.current_url.endswith("/login")  # health data needs a login
            login(driver, ward.console.url, password="wrong")
            assert "wrong password" in driver.find_element(By.ID, "login-error").text
            login(driver, ward.console.url)
            assert driver.find_element(By.CSS_SELECTOR, ".who").text == "nurse-ana · team-a"

            # 45 team-a patients, most urgent first; team-b's patient (critical) is not shown.
            # Hub 6 is online and clear until it is killed below: it starts among the clear.
            order = reload_until(driver, lambda: (o := page_order(driver)) and len(o) == 45
                                 and o[:5] == EXPECTED_TOP[:5] and o)
            assert order[:5] == EXPECTED_TOP[:5], order
            assert patient_id(47) not in order and len(order) == 45
            assert order[5:8] == [patient_id(i) for i in (5, 4, 8)], order
            assert order[8:] == sorted(order[8:]), "all-clear patients by id"
            top = driver.find_element(By.CSS_SELECTOR, "#ward tbody tr")
            assert "CRITICAL fever tachycardia 38.9 °C" in top.text
            assert "tier care team" in top.text
            row8 = driver.find_element(By.CSS_SELECTOR, f'tr[data-patient="{hub_id(8)}/{patient_id(8)}"]')
            assert "acknowledged by nurse-cleo" in row8.text
            row4 = driver.find_element(By.CSS_SELECTOR, f'tr[data-patient="{hub_id(4)}/{patient_id(4)}"]')
            assert "battery low" in row4.find_element(By.CSS_SELECTOR, ".technical").text
            assert row4.find_element(By.CSS_SELECTOR, ".clinical").text == "none"
            assert "15 %" in row4.find_element(By.CSS_SELECTOR, ".devices").text
            assert "day 3" in driver.find_element(
                By.CSS_SELECTOR, f'tr[data-patient="{hub_id(3)}/{patient_id(3)}"]').text
            if SCREENSHOTS:
                driver.save_screenshot(f"{SCREENSHOTS}/console-ward.png")

            # Acknowledge the top alert from the page, with a note.
            top.find_element(By.NAME, "note").send_keys("called patient, coming in")
            top.find_element(By.CSS_SELECTOR, ".ack-button").click()
            assert "Acknowledgement sent" in driver.find_element(By.ID, "flash").text
            crit = ward.alerts["crit_team"]
            assert until(lambda: listener.messages), "no ack reached the subscriber"
            topic, payload = listener.messages[0]
            assert topic == f"crs/v1/{hub_id(7)}/{patient_id(7)}/alert/ack/nurse-ana"
            assert payload == {"alert_id": crit.alert_id, "actor": "nurse-ana",
                               "note": "called patient, coming in"}
            assert "ack sent by nurse-ana" in driver.find_element(
                By.CSS_SELECTOR, "#ward tbody tr").text
            # The (simulated) hub confirms: the patient moves down among the acknowledged.
            ward.hubs[7].acknowledge(crit, "nurse-ana")
            order = reload_until(driver, lambda: (o := page_order(driver))[0] == patient_id(3)
                                 and o)
            assert order[:4] == [patient_id(i) for i in (3, 2, 1, 9)], order
            row7 = driver.find_element(By.CSS_SELECTOR, f'tr[data-patient="{hub_id(7)}/{patient_id(7)}"]')
            assert row7.get_attribute("data-group") == "2"
            assert "acknowledged by nurse-ana" in row7.text

            # Kill hub 6 (keepalive 2 s): no DISCONNECT, the broker sends its Last Will after
            # 1.5 x keepalive; the page must show it offline within that window (+ slack).
            row6 = f'tr[data-patient="{hub_id(6)}/{patient_id(6)}"]'
            assert "online" in driver.find_element(By.CSS_SELECTOR, f"{row6} .hub").text
            killed = time.monotonic()
            ward.killable.send_signal(signal.SIGKILL)
            ward.killable.wait()
            assert reload_until(driver, lambda: "offline" in driver.find_element(
                By.CSS_SELECTOR, f"{row6} .hub").text, timeout=8), "hub 6 never shown offline"
            took = time.monotonic() - killed
            assert took < 2 * 1.5 + 3, f"offline shown after {took:.1f} s"
            order = page_order(driver)
            assert order.index(patient_id(6)) == order.index(patient_id(9)) + 1, order

            # Another team's patient is not there, even by URL.
            driver.get(f"{ward.console.url}patient/{hub_id(47)}/{patient_id(47)}")
            assert "no such patient in your team" in driver.page_source
    finally:
        listener.close()


def test_duplicate_event_is_shown_once_and_history_and_chart_render(ward: Ward) -> None:
    from selenium.webdriver.common.by import By

    hub = ward.hubs[1]
    high = ward.alerts["high"]
    receipts = AckSubscriber(ward.broker.port, "crs/v1/+/+/alert/receipt")
    with chromium() as driver:
        login(driver, ward.console.url)
        driver.get(f"{ward.console.url}patient/{hub_id(1)}/{patient_id(1)}")
        # The retained state shows the open alert once the console's subscriptions are in.
        assert reload_until(driver, lambda: driver.find_elements(
            By.CSS_SELECTOR, f'.open [data-alert="{high.alert_id}"]'))
        # The same transition delivered twice (a retry after a lost PUBACK): same event_id.
        repeated = hub.event(high, AlertState.ESCALATED)
        hub.event(high, AlertState.ESCALATED, event_id=repeated.event_id, at=repeated.event_at)
        start = repeated.event_at
        for minute in range(0, 24 * 60, 20):
            hub.vitals(start - timedelta(minutes=minute), 37.0 + (minute % 200) / 100,
                       80 + minute % 30)

        def escalated_rows() -> list[Any]:
            return driver.find_elements(By.CSS_SELECTOR, f'tr[data-event="{repeated.event_id}"]')
        assert reload_until(driver, lambda: escalated_rows())
        assert len(escalated_rows()) == 1
        # Shown once, confirmed for each delivery (docs/delivery.md: duplicates included), by
        # the console's MQTT username, on the patient's receipt topic.
        expected = (f"crs/v1/{hub_id(1)}/{patient_id(1)}/alert/receipt",
                    {"event_id": repeated.event_id, "consumer": "console-1"})
        assert until(lambda: receipts.messages.count(expected) == 2, 10), receipts.messages
        receipts.close()
        states = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#history tbody tr")]
        assert len(states) == 1 and "escalated" in states[0], states
        def points() -> int:
            lines = driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline.temperature_c")
            return len(lines[0].get_attribute("points").split()) if lines else 0
        # 72 samples, one every 20 min over 24 h, each its own 5-minute bucket (QoS 0 vitals:
        # wait for the last to be stored).
        assert reload_until(driver, lambda: points() == 72), points()
        markers = driver.find_elements(By.CSS_SELECTOR, "svg.chart g.marker")
        assert len(markers) == 1
        if SCREENSHOTS:
            driver.save_screenshot(f"{SCREENSHOTS}/console-patient.png")
        driver.get(f"{ward.console.url}patient/{hub_id(1)}/{patient_id(1)}?range=7d")
        assert driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline.heart_rate_bpm")

        driver.get(f"{ward.console.url}summary")
        text = driver.find_element(By.TAG_NAME, "main").text
        assert "Daily summary" in text and patient_id(1) in text and patient_id(47) not in text
        assert "Open now: high fever since" in text
        section = driver.find_elements(By.CSS_SELECTOR, ".summary-patient")[3].text
        assert section.startswith(patient_id(1)) and "escalated" in section, section
        if SCREENSHOTS:
            driver.save_screenshot(f"{SCREENSHOTS}/console-summary.png")
        # Print view: navigation and ack forms are hidden.
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        assert not driver.find_element(By.CSS_SELECTOR, "header.top").is_displayed()


def test_post_without_csrf_token_is_refused_and_logout_ends_the_session(ward: Ward) -> None:
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        login(driver, ward.console.url)
        token = driver.find_element(By.NAME, "csrf").get_attribute("value")
        # A form built by "another site": same fields, no token. Run from the console's origin
        # so the SameSite cookie is sent and only the CSRF check can refuse it.
        crit = ward.alerts["crit_old"]
        driver.execute_script("""
            const f = document.createElement('form'); f.method = 'post'; f.action = '/ack';
            for (const [k, v] of Object.entries(arguments[0])) {
              const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();""",
            {"hub": hub_id(3), "patient": patient_id(3), "alert_id": crit.alert_id,
             "csrf": "forged"})
        until(lambda: "invalid form token" in driver.page_source, 5)
        assert "invalid form token" in driver.page_source
        assert until(lambda: any("refused POST /ack: 403 invalid form token" in line
                                 for line in ward.console.output), 5), ward.console.output[-5:]
        assert token
        session = driver.get_cookie("crs_console")
        assert session and session["httpOnly"] and session["sameSite"] == "Strict"
        # Secrets never reach the log: not the password, the session token or the CSRF token.
        log_text = "\n".join(ward.console.output)
        assert "logged in" in log_text
        for secret in (PASSWORD, session["value"], token):
            assert secret not in log_text
        # A malformed MQTT message: logged with its topic (never its content), and the page
        # keeps working.
        bad_topic = f"crs/v1/{hub_id(0)}/{patient_id(0)}/alert/event"
        ward.hubs[0].client.publish(bad_topic, b"\x80not json", qos=1).wait_for_publish(5)
        ward.hubs[0].client.publish(f"crs/v1/{hub_id(0)}/status", b'{"hub_id": "hub-s00"}',
                                    qos=1).wait_for_publish(5)
        assert until(lambda: sum(f"malformed message on {t}" in line
                                 for line in ward.console.output
                                 for t in (bad_topic, f"crs/v1/{hub_id(0)}/status")) == 2, 10), \
            ward.console.output[-5:]
        assert "not json" not in "\n".join(ward.console.output)
        driver.get(ward.console.url)
        assert len(page_order(driver)) == 45
        driver.find_element(By.ID, "logout").click()
        assert until(lambda: driver.current_url.endswith("/login"), 10)
        driver.get(ward.console.url)
        assert driver.current_url.endswith("/login")


def test_watch_prints_each_alert_once_and_acks_by_id(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = write_config(tmp_path, mosquitto.port, hubs=6)
    watch = start_console(config, "--watch")
    hub = SimHub(mosquitto.port, hub_id(0), patient_id(0)).start()
    receipts = AckSubscriber(mosquitto.port, "crs/v1/+/+/alert/receipt")
    try:
        alert = None

        def subscribed() -> bool:
            nonlocal alert
            alert = hub.raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.4)
            return until(lambda: any(alert.alert_id in line for line in watch.output), 1.0)
        assert until(subscribed, 15, step=0), watch.output  # until the watcher's SUBACK
        assert alert is not None
        raised = [line for line in watch.output if alert.alert_id in line]
        assert len(raised) == 1 and f"HIGH fever raised {hub_id(0)}/{patient_id(0)} 38.4 °C" in raised[0]
        again = hub.event(alert, AlertState.ESCALATED)
        hub.event(alert, AlertState.ESCALATED, event_id=again.event_id, at=again.event_at)
        hub.acknowledge(alert, "nurse-ana")
        assert until(lambda: any(f"ACK {alert.alert_id} by nurse-ana" in line
                                 for line in watch.output))
        lines = [line for line in watch.output if alert.alert_id in line]
        assert [line.split()[1] for line in lines] == ["HIGH", "HIGH", "ACK"], lines
        assert "escalated" in lines[1]
        # Printed means shown: each delivery is confirmed, the duplicate too.
        assert until(lambda: [m["event_id"] for _, m in receipts.messages].count(
            again.event_id) == 2), receipts.messages
    finally:
        receipts.close()
        hub.stop()
        watch.stop()


# --- the full round trip to a real hub ----------------------------------------------------------

def test_ack_from_the_page_reaches_a_real_hub_and_comes_back_acknowledged(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The whole loop: a real Hub raises a fever, the nurse acknowledges on the page, the hub
    journals the ack with the actor taken from the topic, and its `acknowledged` event brings
    "acknowledged by nurse-ana" back to the page."""
    import asyncio

    from selenium.webdriver.common.by import By

    from daemon.hub import Hub
    from tests.support.faults import base_config, feed_fever
    from tests.support.hubs import FakeClock

    config_path = tmp_path / "console.toml"
    config_path.write_text(
        f'[console]\ndata_dir = "{tmp_path / "console-data"}"\nlisten_port = 0\nrefresh_s = 0\n'
        f'[mqtt]\nport = {mosquitto.port}\nkeepalive_s = 5\nreconnect_max_s = 1\n'
        '[[teams]]\nid = "team-a"\npatients = [{ hub = "hub-test", patient = "p-0001" }]\n'
        f'[[nurses]]\nusername = "nurse-ana"\nteam = "team-a"\n'
        f'password_hash = "{hash_password(PASSWORD)}"\n')
    console = start_console(config_path)
    clock = FakeClock()

    def ack_in_browser(alert_id: str) -> str:
        with chromium() as driver:
            login(driver, console.url)
            selector = f'[data-alert="{alert_id}"]'
            assert reload_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, selector))
            alert = driver.find_element(By.CSS_SELECTOR, selector)
            alert.find_element(By.NAME, "note").send_keys("on my way")
            alert.find_element(By.CSS_SELECTOR, ".ack-button").click()
            assert "Acknowledgement sent" in driver.find_element(By.ID, "flash").text
            ok = reload_until(driver, lambda: "acknowledged by nurse-ana" in driver.find_element(
                By.CSS_SELECTOR, selector).text, timeout=10)
            return "acknowledged" if ok else driver.find_element(By.CSS_SELECTOR, selector).text

    async def scenario() -> None:
        hub = Hub(base_config(tmp_path / "hub-data", mosquitto.port), clock=clock,
                  tick_interval_s=3600, heartbeat_interval_s=3600)
        await hub.start()
        assert await hub.wait_connected(10)
        try:
            feed_fever(hub, clock, minutes=2)
            (fever_id,) = hub.tracked
            result = await asyncio.to_thread(ack_in_browser, fever_id)
            assert result == "acknowledged", f"the hub never confirmed the ack: {result}"
            last = hub.store.journal(fever_id)[-1]
            assert (last.state, last.actor) == ("acknowledged", "nurse-ana")
        finally:
            await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        console.stop()


def http_login(url: str, user: str = "nurse-ana") -> Any:
    """A logged-in HTTP client without a browser (cookie jar, CSRF token from the form)."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    web = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    token = re.search(r'name="csrf" value="([^"]+)"', web.open(url + "login").read().decode())
    assert token
    form = urllib.parse.urlencode({"csrf": token.group(1), "username": user,
                                   "password": PASSWORD}).encode()
    assert "Log out" in web.open(url + "login", form).read().decode()
    return web


def test_events_published_while_the_console_was_down_reach_its_history(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The console's MQTT session outlives it (session expiry, fixed client id): the broker
    queues alert events meanwhile, and the restarted console stores and shows them."""
    config = write_config(tmp_path, mosquitto.port, hubs=6)
    hub = SimHub(mosquitto.port, hub_id(0), patient_id(0)).start()
    hub.status()
    console = start_console(config)
    try:
        web = http_login(console.url)
        page = f"{console.url}patient/{hub_id(0)}/{patient_id(0)}"
        # Subscribed once the retained status shows.
        assert until(lambda: 'class="hub-online"' in web.open(page).read().decode(), 10)
        first = hub.raise_alert(AlertKind.FEVER, Severity.HIGH, value=38.2)
        assert until(lambda: 'data-event="' in web.open(page).read().decode(), 10)
        console.stop()
        assert console.process.returncode == 0, console.output[-5:]
        # While the console is down: the alert escalates, then clears.
        escalated = hub.event(first, AlertState.ESCALATED)
        hub.alerts.clear()
        cleared = hub.event(first, AlertState.CLEARED)
        hub.snapshot()
        console = start_console(config)
        web = http_login(console.url)
        page = f"{console.url}patient/{hub_id(0)}/{patient_id(0)}"
        text = until(lambda: (t := web.open(page).read().decode())
                     and escalated.event_id in t and cleared.event_id in t and t, 10)
        assert text, "events from the console's downtime never arrived"
        assert text.count('data-event="') == 3  # raised, escalated, cleared: each once
        assert 'id="no-open"' in text
    finally:
        console.stop()
        hub.stop()


def test_repeated_failed_logins_slow_down_then_the_right_password_works(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    console = start_console(write_config(tmp_path, mosquitto.port, hubs=6))
    web = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def attempt(password: str) -> tuple[int, str]:
        page = web.open(console.url + "login").read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        form = urllib.parse.urlencode({"csrf": token.group(1), "username": "nurse-ana",
                                       "password": password}).encode()
        try:
            with web.open(console.url + "login", form) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        for _ in range(5):
            assert attempt("guess")[0] == 401
        status, text = attempt(PASSWORD)  # right, but too soon after 5 failures
        assert status == 429 and "Too many failed logins: try again in 1 s." in text
        assert until(lambda: attempt(PASSWORD)[0] == 200, 5)
        assert attempt("guess")[0] == 401  # the success reset the count: no wait now
        assert sum("failed console login" in line for line in console.output) == 6
        assert all("nurse-ana" not in line for line in console.output
                   if "failed console login" in line or "too many" in line)
    finally:
        console.stop()


def test_every_response_has_the_security_headers_no_access_log_and_a_body_size_limit(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    import http.client
    import re
    import urllib.error
    import urllib.parse

    console = start_console(write_config(tmp_path, mosquitto.port, hubs=6))
    port = urllib.parse.urlsplit(console.url).port
    assert port

    def raw(method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        """No cookies, no redirects followed."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            response.read()
            return response.status, response.headers
        finally:
            conn.close()

    def logged_in(path: str, form: dict[str, str] | None = None) -> tuple[int, Any, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with web.open(console.url + path, data) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    try:
        web = http_login(console.url)
        status, _, ward_page = logged_in("")
        token = re.search(r'name="csrf" value="([^"]+)"', ward_page)
        assert status == 200 and token
        responses = {
            "no session": raw("GET", "/"), "login page": raw("GET", "/login"),
            "stylesheet": raw("GET", "/static/console.css"),
            "ward": logged_in("")[:2], "summary": logged_in("summary")[:2],
            "another team's patient": logged_in(f"patient/{hub_id(5)}/{patient_id(5)}")[:2],
            "wrong method": logged_in("ack")[:2],
        }
        assert {k: v[0] for k, v in responses.items()} == {
            "no session": 303, "login page": 200, "stylesheet": 200, "ward": 200,
            "summary": 200, "another team's patient": 404, "wrong method": 405}
        for name, (_, headers) in responses.items():
            assert headers["Content-Security-Policy"] == (
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"), name
            assert (headers["X-Content-Type-Options"], headers["Referrer-Policy"],
                    headers["Cache-Control"]) == ("nosniff", "no-referrer", "no-store"), name
        assert responses["no session"][1]["Location"] == "/login"
        assert responses["wrong method"][1]["Allow"] == "POST"

        # A form of 60 KB reaches the page (and is refused for what it lacks); over 64 KiB the
        # server refuses it before any page sees it.
        status, _, text = logged_in("ack", {"csrf": token.group(1), "note": "x" * 60_000})
        assert (status, text) == (400, "hub, patient and alert_id are required")
        with contextlib.suppress(ConnectionError):  # it closes the connection, maybe mid-send
            assert raw("POST", "/login", "csrf=" + "x" * 70_000)[0] == 400
        assert until(lambda: any("Content-Length too long" in line for line in console.output))
        # No access log: the pages served above are not in the log (only the refusals are).
        assert not [line for line in console.output if "tornado.access" in line
                    or "GET /summary" in line or "GET /static" in line]
        assert any(f"refused GET /patient/{hub_id(5)}/{patient_id(5)}: 404" in line
                   for line in console.output)
    finally:
        console.stop()
