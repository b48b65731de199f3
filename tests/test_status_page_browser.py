"""The patient's status page in a real headless chromium (Debian's, through chromium-driver).

The page runs on its own event loop; ``submit`` is a plain recording function, so these tests
check exactly which monitor inputs each action produces. The end-to-end run against the real
Hub and mosquitto is in test_status_page_hub.py.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from daemon.access_code import AccessCode
from daemon.monitor import Acknowledgement, ManualReading, SymptomReport
from daemon.readings import Reading, Vital
from daemon.status_page import MAX_CONNECTIONS
from tests.support.browser import (
    PageServer,
    RawClient,
    chromium,
    no_horizontal_scroll,
    page_left,
    phone_width,
)
from tests.support.hubs import FakeClock
from tests.support.page_scenes import (
    CODE,
    Recorder,
    all_clear,
    empty_snapshot,
    fever,
    make_page,
)
from tests.support.requirements import require_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def driver(browser: Any) -> Any:
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.delete_all_cookies()
    return browser


@pytest.fixture
def clock() -> FakeClock:
    clock = FakeClock()
    clock.at(36 * 3600)
    return clock


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock, recorder: Recorder) -> Iterator[PageServer]:
    page, _ = make_page(tmp_path, clock=clock, submit=recorder)
    with PageServer(page) as srv:
        yield srv


def click(driver: Any, by: str, what: str) -> None:
    """Click a control that loads a new page, and wait until the old page is gone."""
    element = driver.find_element(by, what)
    element.click()
    WebDriverWait(driver, 10).until(page_left(element))


def sign_in(driver: Any, server: PageServer, code: str = CODE) -> None:
    driver.get(server.url + "/login")
    driver.find_element(By.ID, "code").send_keys(code)
    click(driver, By.CSS_SELECTOR, "form[action='/login'] button")


def text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_wrong_access_code_is_refused_and_logged_without_the_code(
        driver: Any, server: PageServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.status_page")
    sign_in(driver, server, "1234-5678-9999")
    assert "That code is not right" in text(driver)
    assert driver.find_element(By.ID, "code").get_attribute("aria-invalid") == "true"
    driver.get(server.url + "/")
    assert driver.current_url.endswith("/login"), "a wrong code must not open the page"
    assert "CAR-T" not in driver.find_element(By.TAG_NAME, "main").text
    assert any("wrong access code" in r.getMessage() for r in caplog.records)
    assert not any("9999" in r.getMessage() or "1234" in r.getMessage() for r in caplog.records)
    sign_in(driver, server)
    assert driver.current_url == server.url + "/", text(driver)
    assert driver.find_element(By.CSS_SELECTOR, "form[action='/logout']")


def test_too_many_wrong_codes_lock_out_even_the_right_one(server: PageServer) -> None:
    client = RawClient(server.url)
    assert [client.sign_in(f"0000-0000-000{i}") for i in range(5)] == [401] * 5
    status, body, _ = client.request("POST", "/login",
                                     {"csrf": client.csrf("/login"), "code": CODE})
    assert status == 429
    assert "Too many wrong codes" in body and "+1 555 0100" in body
    assert client.request("GET", "/")[0] == 303  # still not signed in


def test_a_post_without_the_csrf_token_is_refused(
        server: PageServer, recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    client = RawClient(server.url)
    assert client.sign_in(CODE) == 303
    # Signed in, but the token is missing or wrong: nothing reaches the monitor.
    assert client.request("POST", "/unwell", {"symptom": "trouble_breathing"})[0] == 403
    assert client.request("POST", "/unwell", {"symptom": "trouble_breathing",
                                              "csrf": "forged"})[0] == 403
    assert client.request("POST", "/reading", {"temperature": "38.6", "unit": "C"})[0] == 403
    # Nor can the login form be posted without the token its page handed out.
    assert RawClient(server.url).request("POST", "/login", {"code": CODE})[0] == 403
    assert recorder.inputs == []
    assert sum("missing or wrong CSRF token" in r.getMessage() for r in caplog.records) == 4
    # The same request with the page's token goes through.
    status, _, headers = client.request("POST", "/unwell", {"symptom": "chills",
                                                           "csrf": client.csrf("/unwell")})
    assert status == 303 and headers["Location"] == "/"
    assert [type(i) for i in recorder.inputs] == [SymptomReport]


def test_fever_alert_shows_the_message_and_tap_to_call_numbers(
        driver: Any, server: PageServer, clock: FakeClock) -> None:
    event = server.call(lambda: fever(server.page, server.page.config, clock.now))
    sign_in(driver, server)
    alert = driver.find_element(By.CSS_SELECTOR, "article.alert")
    assert alert.find_element(By.TAG_NAME, "h2").text == "Alert: fever"
    assert event.patient_message in alert.text
    calls = {a.get_attribute("href"): a.text for a in alert.find_elements(By.CSS_SELECTOR, "a.call")}
    assert calls == {"tel:+15550100": "Call the CAR-T team: +1 555 0100",
                     "tel:911": "Emergency: call 911"}
    assert "38.6 °C (101.5 °F)" in text(driver)
    assert driver.title.startswith("Alert: fever")


def test_all_clear_and_stale_readings(driver: Any, server: PageServer, clock: FakeClock) -> None:
    server.call(lambda: all_clear(server.page, server.page.config, clock.now))
    sign_in(driver, server)
    assert driver.find_element(By.CSS_SELECTOR, ".clear h2").text == "All clear"
    vitals = driver.find_element(By.CSS_SELECTOR, ".vitals").text
    assert "less than a minute ago" in vitals
    # 25 minutes without readings: no longer all clear, and the old value is marked as old.
    clock.now += timedelta(minutes=25)
    driver.get(server.url + "/")
    assert not driver.find_elements(By.CSS_SELECTOR, ".clear")
    assert "no current temperature" in driver.find_element(By.CSS_SELECTOR, ".unknown h2").text
    stale = driver.find_elements(By.CSS_SELECTOR, ".vital.stale")
    assert len(stale) == 2
    assert all("Old reading, not current" in s.text and "25 minutes ago" in s.text for s in stale)
    assert not driver.find_elements(By.CSS_SELECTOR, ".vital .value")


def test_a_care_team_only_notice_never_reaches_the_patients_page(
        driver: Any, server: PageServer, clock: FakeClock) -> None:
    """temperature_trend (issue 13) is open in the monitor's snapshot, yet the patient's page
    stays all clear: no alert, no chart marker, no word of it."""
    from daemon.alerts import AlertKind, Severity
    from daemon.monitor import MonitorOutput
    from tests.support.page_scenes import fever_event

    def scene() -> None:
        page, config = server.page, server.page.config
        all_clear(page, config, clock.now)
        event, snapshot = fever_event(config, clock.now - timedelta(minutes=5), value=37.6,
                                      kind=AlertKind.TEMPERATURE_TREND, severity=Severity.LOW)
        page.on_output(MonitorOutput(events=[event]), snapshot)
        assert [a.kind for a in page.snapshot.open] == [AlertKind.TEMPERATURE_TREND]

    server.call(scene)
    sign_in(driver, server)
    assert driver.find_element(By.CSS_SELECTOR, ".clear h2").text == "All clear"
    assert not driver.find_elements(By.CSS_SELECTOR, "article.alert")
    source = driver.page_source.lower()
    assert "trend" not in source and "baseline" not in source
    assert not driver.title.startswith("Alert")


def test_an_emergency_and_a_reminder_show_in_plain_words(
        driver: Any, server: PageServer, clock: FakeClock) -> None:
    from daemon.alerts import AlertKind, Severity
    from daemon.monitor import MonitorOutput
    from tests.support.page_scenes import fever_event

    def scene() -> None:
        page, config = server.page, server.page.config
        all_clear(page, config, clock.now)
        event, snapshot = fever_event(config, clock.now - timedelta(minutes=2), value=87,
                                      kind=AlertKind.FEVER_HYPOXIA, severity=Severity.EMERGENCY)
        page.on_output(MonitorOutput(events=[event]), snapshot)

    server.call(scene)
    sign_in(driver, server)
    alert = driver.find_element(By.CSS_SELECTOR, "article.alert")
    assert alert.find_element(By.TAG_NAME, "h2").text == "Emergency: fever and low oxygen"
    assert "Your oxygen level has stayed below 90 % (87 %) and you have a fever. Call 911 now." \
        in alert.text
    assert "NEWS" not in driver.page_source


def test_i_have_called_sends_a_patient_acknowledgement(
        driver: Any, server: PageServer, clock: FakeClock, recorder: Recorder) -> None:
    event = server.call(lambda: fever(server.page, server.page.config, clock.now))
    sign_in(driver, server)
    click(driver, By.XPATH, "//button[text()='I have called my care team']")
    assert recorder.inputs == [Acknowledgement(alert_id=event.alert_id, actor="patient",
                                               at=clock.now)]
    assert "has noted that you called the CAR-T team" in driver.find_element(
        By.CSS_SELECTOR, ".flash").text


def test_thermometer_reading_in_fahrenheit_and_bad_input(
        driver: Any, server: PageServer, clock: FakeClock, recorder: Recorder) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "Enter a thermometer reading")
    field = driver.find_element(By.ID, "temperature")
    # Every control has a label a screen reader announces.
    assert driver.find_element(By.CSS_SELECTOR, "label[for='temperature']").text == "Temperature"
    field.send_keys("38.6")
    driver.find_element(By.CSS_SELECTOR, "input[name='unit'][value='F']").click()
    click(driver, By.XPATH, "//button[text()='Send the reading']")
    error = driver.find_element(By.ID, "temperature-error").text
    assert "38.6 °F cannot be right. Did you mean °C?" in error
    assert driver.find_element(By.ID, "temperature").get_attribute("aria-invalid") == "true"
    assert recorder.inputs == []
    field = driver.find_element(By.ID, "temperature")
    field.clear()
    field.send_keys("101,5")
    click(driver, By.XPATH, "//button[text()='Send the reading']")
    assert len(recorder.inputs) == 1
    reading = recorder.inputs[0]
    assert isinstance(reading, ManualReading) and reading.at == clock.now
    assert reading.temperature_c == pytest.approx(38.61, abs=0.01)
    assert "38.6 °C (101.5 °F) is recorded" in driver.find_element(By.CSS_SELECTOR, ".flash").text


def test_i_feel_unwell_sends_the_documented_symptom_name(
        driver: Any, server: PageServer, clock: FakeClock, recorder: Recorder) -> None:
    sign_in(driver, server)
    click(driver, By.LINK_TEXT, "I feel unwell")
    buttons = driver.find_elements(By.CSS_SELECTOR, "button[name='symptom']")
    assert [b.get_attribute("value") for b in buttons] == [
        "trouble_breathing", "dizziness_fainting", "confusion", "chills", "severe_headache",
        "nausea_vomiting", "rash"]
    click(driver, By.XPATH, "//button[text()='Trouble breathing']")
    assert recorder.inputs == [SymptomReport(symptom="trouble_breathing", at=clock.now)]
    flash = driver.find_element(By.CSS_SELECTOR, ".flash-emergency")
    assert "call 911 now" in flash.text
    assert flash.find_element(By.CSS_SELECTOR, "a.call").get_attribute("href") == "tel:911"


@pytest.mark.parametrize("path", ["/", "/reading", "/unwell", "/login"])
def test_no_horizontal_scroll_at_360_px(driver: Any, server: PageServer, clock: FakeClock,
                                        path: str) -> None:
    server.call(lambda: fever(server.page, server.page.config, clock.now))
    sign_in(driver, server)
    if path == "/login":
        driver.delete_all_cookies()
    phone_width(driver)
    driver.get(server.url + path)
    assert driver.execute_script("return window.innerWidth") == 360
    scroll, client = no_horizontal_scroll(driver)
    assert scroll <= client, f"{path}: {scroll} px wide at a {client} px viewport"


def test_rotating_the_access_code_signs_phones_out(driver: Any, server: PageServer) -> None:
    sign_in(driver, server)
    assert driver.current_url == server.url + "/"
    AccessCode.from_code("9999-8888-7777").save(server.page.config.hub.data_dir)
    driver.get(server.url + "/")
    assert driver.current_url.endswith("/login")


def test_sign_in_is_refused_while_no_code_exists(tmp_path: Path, clock: FakeClock,
                                                  driver: Any) -> None:
    page, _ = make_page(tmp_path, clock=clock, submit=Recorder(), code=None)
    with PageServer(page) as srv:
        driver.get(srv.url + "/")
        assert driver.current_url.endswith("/login")
        assert "no access code yet" in text(driver)
        assert not driver.find_elements(By.ID, "code")
        client = RawClient(srv.url)
        assert client.request("POST", "/login", {"code": CODE})[0] == 403
        assert client.request("GET", "/")[0] == 303


def test_readings_reach_the_page_and_off_body_ones_do_not(
        driver: Any, server: PageServer, clock: FakeClock) -> None:
    from daemon.monitor import MonitorOutput
    config = server.page.config
    out = MonitorOutput(readings=[
        Reading("temp-patch", Vital.TEMPERATURE, 37.4, clock.now - timedelta(minutes=3)),
        Reading("temp-patch", Vital.TEMPERATURE, 31.0, clock.now, sensor_contact=False),
        Reading("chest-strap", Vital.HEART_RATE, 88, clock.now, sensor_contact=True),
    ])
    server.call(lambda: server.page.on_output(out, empty_snapshot(config, clock.now)))
    server.call(lambda: server.page.set_link(False))
    server.call(lambda: server.page.set_sound_problem("No sound card found (aplay: no device)."))
    sign_in(driver, server)
    body = text(driver)
    assert "37.4 °C (99.3 °F)\n3 minutes ago, from temp-patch" in body
    assert "88 beats per minute" in body and "31.0" not in body
    assert "Not connected. Alerts wait on the hub" in body
    warning = driver.find_element(By.CSS_SELECTOR, ".warning").text
    assert "The hub cannot sound its alarm" in warning and "No sound card found" in warning


def test_the_page_refreshes_itself_until_the_patient_stops_it(
        tmp_path: Path, clock: FakeClock) -> None:
    page, _ = make_page(tmp_path, clock=clock, submit=Recorder(), refresh_s=30)
    with PageServer(page) as srv:
        client = RawClient(srv.url)
        assert client.sign_in(CODE) == 303
        status, body, headers = client.request("GET", "/")
        assert status == 200
        assert '<meta http-equiv="refresh" content="30">' in body
        assert "updates itself every 30 seconds" in body
        assert headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        status, body, _ = client.request("GET", "/?refresh=off")
        assert 'http-equiv="refresh"' not in body and "Updating is stopped" in body


# WCAG relative luminance contrast of every visible text node against its effective background.
CONTRAST_JS = """
const lum = c => { const m = c.match(/[\\d.]+/g).map(Number);
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]); };
const bg = el => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
  const m = c.match(/[\\d.]+/g); if (m && (m.length < 4 || Number(m[3]) > 0)) return c; }
  return 'rgb(255, 255, 255)'; };
const out = []; const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (w.nextNode()) { const t = w.currentNode; const el = t.parentElement;
  if (!t.textContent.trim() || el.closest('svg') || !el.getClientRects().length) continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  out.push([t.textContent.trim().slice(0, 40), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]); }
return out;
"""


@pytest.mark.parametrize("path", ["/", "/reading", "/unwell", "/login"])
def test_every_text_meets_wcag_aa_contrast(driver: Any, server: PageServer, clock: FakeClock,
                                           path: str) -> None:
    def scene() -> None:
        fever(server.page, server.page.config, clock.now)
        server.page.set_sound_problem("No sound card found.")
    server.call(scene)
    sign_in(driver, server)
    driver.get(server.url + "/?refresh=off")
    click(driver, By.XPATH, "//button[text()='I have called my care team']")  # a flash, too
    if path == "/login":
        driver.delete_all_cookies()
    driver.get(server.url + path)
    texts = driver.execute_script(CONTRAST_JS)
    assert len(texts) > 5
    low = [(t, round(r, 2)) for t, r in texts if r < 4.5]
    assert low == [], f"{path}: text below 4.5:1"


UNLABELLED_JS = """
const out = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), button, a, select, textarea')) {
  let name = '';
  if (el.matches('input, select, textarea')) {
    const label = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label');
    name = label ? label.textContent.trim() : (el.getAttribute('aria-label') || '');
  } else {
    name = (el.textContent || el.getAttribute('aria-label') || '').trim();
  }
  if (!name) out.push(el.outerHTML.slice(0, 80));
}
return out;
"""


@pytest.mark.parametrize("path", ["/", "/reading", "/unwell", "/login"])
def test_every_control_has_a_name_for_screen_readers(driver: Any, server: PageServer,
                                                     clock: FakeClock, path: str) -> None:
    server.call(lambda: fever(server.page, server.page.config, clock.now))
    sign_in(driver, server)
    if path == "/login":
        driver.delete_all_cookies()
    driver.get(server.url + path)
    assert driver.find_elements(By.CSS_SELECTOR, "button")
    assert driver.execute_script(UNLABELLED_JS) == []
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"


def test_an_input_the_monitor_ignores_is_never_reported_as_passed_on(
        tmp_path: Path, clock: FakeClock, driver: Any, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(silent=True)
    page, _ = make_page(tmp_path, clock=clock, submit=recorder)
    with PageServer(page) as srv:
        sign_in(driver, srv)
        driver.get(srv.url + "/unwell")
        click(driver, By.XPATH, "//button[text()='Trouble breathing']")
        flash = driver.find_element(By.CSS_SELECTOR, ".flash-emergency")
        assert flash.get_attribute("role") == "alert"
        assert "call 911 now. The hub could not pass this on to your care team." in flash.text
        assert "has been told" not in flash.text
        driver.get(srv.url + "/unwell")
        click(driver, By.XPATH, "//button[text()='A new rash']")
        flash = driver.find_element(By.CSS_SELECTOR, ".flash-error")
        assert "call the CAR-T team at +1 555 0100 now" in flash.text
        assert flash.find_element(By.CSS_SELECTOR, "a.call").get_attribute("href") == \
            "tel:+15550100"
        driver.get(srv.url + "/reading")
        driver.find_element(By.ID, "temperature").send_keys("38.6")
        click(driver, By.XPATH, "//button[text()='Send the reading']")
        flash = driver.find_element(By.CSS_SELECTOR, ".flash-error")
        assert "could not use this reading" in flash.text and "is recorded" not in flash.text
        assert [type(i).__name__ for i in recorder.inputs] == [
            "SymptomReport", "SymptomReport", "ManualReading"]
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert sum("raised no alert" in e for e in errors) == 2
        assert sum("did not take the patient's thermometer reading" in e for e in errors) == 1


def test_before_the_first_snapshot_nothing_looks_clear(
        driver: Any, server: PageServer, clock: FakeClock) -> None:
    from daemon.monitor import MonitorOutput
    # Until the shell hands over the first snapshot the page cannot know what is open.
    sign_in(driver, server)
    assert driver.find_element(By.CSS_SELECTOR, ".unknown h2").text == "The hub is starting"
    assert not driver.find_elements(By.CSS_SELECTOR, ".clear")
    server.call(lambda: server.page.on_output(MonitorOutput(),
                                              empty_snapshot(server.page.config, clock.now)))
    driver.get(server.url + "/")
    assert "no current temperature" in driver.find_element(By.CSS_SELECTOR, ".unknown h2").text


def test_the_server_refuses_malformed_requests_and_says_little_about_itself(
        server: PageServer, recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    client = RawClient(server.url)
    status, _, headers = client.request("GET", "/login")
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back
    assert "Server" not in headers  # no server name or version for a scanner
    assert "Etag" not in headers  # a page made fresh each time is never revalidated
    assert client.request("GET", "/no-such-page")[0] == 303  # not signed in: to the sign-in
    assert client.sign_in(CODE) == 303
    status, _, headers = client.request("GET", "/no-such-page")
    assert status == 404 and "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert client.request("GET", "/ack")[0] == 405  # a form target, not a page

    # A form value that is not UTF-8: refused, logged by field name, never by value.
    token = client.csrf("/reading")
    host, port = server.url.removeprefix("http://").split(":")
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.jar)
    body = f"csrf={token}&unit=C&temperature=38.6%FF".encode()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/reading", body, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies})
    assert conn.getresponse().status == 400
    conn.close()
    refusals = [r.getMessage() for r in caplog.records if "is not UTF-8" in r.getMessage()]
    assert refusals and all("temperature" in m and "38.6" not in m for m in refusals), refusals

    # A body larger than any form of the page is refused before it is read.
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/unwell")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Content-Length", str(1024 * 1024))
    conn.putheader("Cookie", cookies)
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()

    assert recorder.inputs == []
    assert client.request("GET", "/")[0] == 200  # and the page still serves


def test_a_flood_of_connections_is_capped_and_the_page_recovers(
        server: PageServer, caplog: pytest.LogCaptureFixture) -> None:
    """Connections past the cap are closed at once (each would hold one of the daemon's file
    descriptors); the refusal is logged once when it starts and once when it ends."""
    caplog.set_level(logging.WARNING, logger="daemon.status_page")
    host, port = server.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10)
            for _ in range(MAX_CONNECTIONS)]
    try:
        deadline = time.monotonic() + 10
        while server.call(lambda: server.page._server._open) < MAX_CONNECTIONS:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the server never took the idle connections"
            time.sleep(0.02)
        extra = [socket.create_connection((host, int(port)), timeout=10) for _ in range(5)]
        for sock in extra:  # closed by the server without a byte
            assert sock.recv(1) == b""
            sock.close()
        with pytest.raises(OSError):  # nor is a page served past the cap
            RawClient(server.url).request("GET", "/login")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the idle connections' closing reaches the server's loop
        try:
            if RawClient(server.url).request("GET", "/login")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the page did not serve again"
        time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("refusing new ones" in m for m in messages) == 1, messages
    assert sum("accepting connections again" in m for m in messages) == 1, messages


def test_with_tls_on_the_page_is_served_over_https_only_with_a_secure_cookie(
        tmp_path: Path, clock: FakeClock, recorder: Recorder) -> None:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "page.crt", tmp_path / "page.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    page, _ = make_page(tmp_path, clock=clock, submit=recorder, tls=(cert, key))
    with PageServer(page):
        assert page.url.startswith("https://127.0.0.1:")
        base = page.url.rstrip("/")
        client = RawClient(base, ssl.create_default_context(cafile=str(cert)))
        status, body, headers = client.request("GET", "/login")
        assert status == 200 and 'name="csrf"' in body
        cookie = headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie, cookie
        assert client.sign_in(CODE) == 303
        status, body, _ = client.request("GET", "/")
        assert status == 200 and 'action="/logout"' in body
        # Plain HTTP to the TLS port gets no page.
        with pytest.raises((OSError, http.client.HTTPException)):
            RawClient(base.replace("https://", "http://")).request("GET", "/login")
        # Nor does a client that does not trust the certificate.
        with pytest.raises(OSError):
            RawClient(base, ssl.create_default_context()).request("GET", "/login")
