"""The status page wired to the real Hub (monitor, store, outbox) and a real mosquitto, driven
from a real headless chromium: what the patient sees and does reaches the care team.

The page and the hub share one event loop in a background thread, as in the daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from daemon.access_code import AccessCode
from daemon.decoding import CHARACTERISTICS
from daemon.encoding import encode_temperature
from daemon.hub import Hub
from daemon.status_page import StatusPage, StatusPageSettings
from tests.support.browser import PageServer, chromium, page_left
from tests.support.hubs import FakeClock, Subscriber, hub_config
from tests.support.mosquitto import Mosquitto
from tests.support.page_scenes import CODE

pytestmark = pytest.mark.integration

TEMP = CHARACTERISTICS["temperature_measurement"]
FEVER = "//article[h2='Alert: fever']"

class HubWithPage:
    def __init__(self, mosquitto: Mosquitto, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.config = hub_config(tmp_path / "data", mosquitto.port)
        AccessCode.from_code(CODE).save(self.config.hub.data_dir)
        self.hub = Hub(self.config, clock=self.clock, tick_interval_s=3600,
                       heartbeat_interval_s=3600)
        self.page = StatusPage(self.config, StatusPageSettings(host="127.0.0.1", port=0,
                                                               refresh_s=0),
                               self.hub.submit, clock=self.clock)
        self.hub.add_sink(self.page)
        self.server = PageServer(self.page)

    def __enter__(self) -> HubWithPage:
        self.server.__enter__()
        self.server.run(self.hub.start())
        assert self.server.run(self.hub.wait_connected(10))
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.run(self.hub.stop())
        self.server.__exit__(*exc)

    def fever(self) -> None:
        """Six minutes of 38.6 °C at the patch's site (its +0.5 °C offset added)."""
        def feed() -> None:
            self.hub.on_connection_change("temp-patch", True)
            for step in range(13):
                self.clock.at(step * 30)
                self.hub.on_payload("temp-patch", TEMP, encode_temperature(38.1))
                self.hub.tick()
        self.server.call(feed)

    def journal_states(self) -> list[tuple[str, str, str]]:
        return self.server.call(lambda: [(e.kind, e.state, e.actor)
                                         for e in self.hub.store.journal()])


@pytest.fixture
def hub_page(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[HubWithPage]:
    with HubWithPage(mosquitto, tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def driver(browser: Any) -> Any:
    browser.delete_all_cookies()
    return browser


def click(driver: Any, by: str, what: str) -> None:
    element = driver.find_element(by, what)
    element.click()
    WebDriverWait(driver, 10).until(page_left(element))


def sign_in(driver: Any, running: HubWithPage) -> None:
    driver.get(running.server.url + "/login")
    driver.find_element(By.ID, "code").send_keys(CODE)
    click(driver, By.CSS_SELECTOR, "form[action='/login'] button")
    assert driver.current_url == running.server.url + "/"


def test_fever_alert_shown_and_i_have_called_reaches_the_care_team(
        hub_page: HubWithPage, mosquitto: Mosquitto, driver: Any) -> None:
    with Subscriber(mosquitto.port) as care_team:
        hub_page.fever()
        assert care_team.wait_for(lambda s: any(e["state"] == "raised" for e in s.events()))
        raised = care_team.events()[0]
        assert (raised["kind"], raised["severity"]) == ("fever", "high")

        sign_in(driver, hub_page)
        # Most severe first: the fever, then the strap's no-data notice (it sent nothing).
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "article.alert h2")]
        assert headings == ["Alert: fever", "Notice: no data"]
        alert = driver.find_element(By.XPATH, FEVER)
        assert raised["patient_message"] in alert.text
        assert alert.find_element(By.CSS_SELECTOR, "a[href='tel:+15550100']").text == \
            "Call the CAR-T team: +1 555 0100"
        assert alert.find_element(By.CSS_SELECTOR, "a[href='tel:911']")
        assert "38.6 °C (101.5 °F)" in driver.find_element(By.CSS_SELECTOR, ".vitals").text

        click(driver, By.XPATH, FEVER + "//button[text()='I have called my care team']")
        assert "has noted that you called the CAR-T team" in driver.find_element(
            By.CSS_SELECTOR, ".flash").text
        # The page now shows the acknowledgement instead of the button, from the hub's snapshot.
        fever = driver.find_element(By.XPATH, FEVER)
        assert "you told the hub that you called your care team" in fever.text
        assert not fever.find_elements(By.TAG_NAME, "button")

        assert ("fever", "acknowledged", "patient") in hub_page.journal_states()
        assert care_team.wait_for(
            lambda s: any(e["state"] == "acknowledged" for e in s.events()))
        acked = next(e for e in care_team.events() if e["state"] == "acknowledged")
        assert acked["alert_id"] == raised["alert_id"]
        assert acked["acknowledged_by"] == "patient"


def test_a_manual_reading_of_38_6_raises_a_fever_alert(
        hub_page: HubWithPage, mosquitto: Mosquitto, driver: Any) -> None:
    with Subscriber(mosquitto.port) as care_team:
        sign_in(driver, hub_page)
        click(driver, By.LINK_TEXT, "Enter a thermometer reading")
        driver.find_element(By.ID, "temperature").send_keys("38.6")
        driver.find_element(By.CSS_SELECTOR, "input[name='unit'][value='C']").click()
        click(driver, By.XPATH, "//button[text()='Send the reading']")
        assert "is recorded" in driver.find_element(By.CSS_SELECTOR, ".flash").text
        assert care_team.wait_for(lambda s: any(
            e["kind"] == "fever" and e["state"] == "raised" for e in s.events()), timeout=5)
        driver.get(hub_page.server.url + "/")
        assert driver.find_element(By.CSS_SELECTOR, "article.alert h2").text == "Alert: fever"


def test_reporting_trouble_breathing_raises_an_emergency_alert(
        hub_page: HubWithPage, mosquitto: Mosquitto, driver: Any) -> None:
    with Subscriber(mosquitto.port) as care_team:
        sign_in(driver, hub_page)
        click(driver, By.LINK_TEXT, "I feel unwell")
        click(driver, By.XPATH, "//button[text()='Trouble breathing']")
        assert "call 911 now" in driver.find_element(By.CSS_SELECTOR, ".flash-emergency").text
        assert care_team.wait_for(lambda s: any(
            e["kind"] == "symptom_reported" and e["severity"] == "emergency"
            for e in s.events()), timeout=5)
        assert driver.find_element(By.CSS_SELECTOR, "article.alert.sev-emergency")
