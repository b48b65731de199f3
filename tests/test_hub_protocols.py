"""Issue 13 through the real hub and a real mosquitto: the care-team-only notice, therapy
windows across a restart, "day N of M" in the heartbeat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import pytest

from daemon.alerts import AlertKind
from daemon.annunciator.player import Annunciator
from daemon.annunciator.settings import AnnunciatorSettings
from daemon.hub import Hub
from daemon.status_page import StatusPage
from daemon.status_page_settings import StatusPageSettings
from tests.support.faults import base_config, feed_temperature, until
from tests.support.hubs import T0, FakeClock, Subscriber
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

PATCH = [{"id": "temp-patch", "profile": "temperature_patch", "address": "AA:BB:CC:DD:EE:02"}]
# A short-memory baseline so the test stays small (the engine's own tests use the defaults).
QUICK_TREND = {"temperature_trend": {
    "bin_hours": 24, "min_bin_samples": 30, "min_baseline_samples": 30, "baseline_lag_s": 0,
    "sustain_window_s": 3600, "sustain_min_samples": 20, "sustain_min_span_s": 1800,
    "trend_window_s": 1800, "trend_min_samples": 10}}


def new_hub(data: Path, port: int, clock: FakeClock, **sections: Any) -> Hub:
    return Hub(base_config(data, port, devices=PATCH, **sections), clock=clock,
               tick_interval_s=3600, heartbeat_interval_s=3600)


def test_the_baseline_notice_reaches_the_care_team_and_never_the_patient(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    clock = FakeClock()
    hub = new_hub(tmp_path / "data", mosquitto.port, clock, thresholds=QUICK_TREND)
    page = StatusPage(hub.config, StatusPageSettings(host="127.0.0.1", port=0), hub.submit,
                      clock=clock)
    annunciator = Annunciator(AnnunciatorSettings(), on_problem=lambda reason: None)
    hub.add_sink(page)
    hub.add_sink(annunciator)

    async def life(care_team: Subscriber) -> None:
        await hub.start()
        assert await hub.wait_connected(10)
        # Three afebrile hours at ~36.6 °C, then a slow rise that stays below 38.0 °C.
        for minute in range(330):
            clock.now = T0 + timedelta(minutes=minute)
            core = 36.6 + (0.02 if minute % 2 else -0.02)
            if minute >= 180:
                core += (minute - 180) * 0.008
            feed_temperature(hub, "temp-patch", core)
            hub.tick()
        assert AlertKind.TEMPERATURE_TREND in hub.open_alert_kinds()
        assert await until(lambda: any(e["kind"] == "temperature_trend"
                                       for e in care_team.events()), 10)
        await hub.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(life(care_team))
        notices = [e for e in care_team.events() if e["kind"] == "temperature_trend"]
        alert_state = care_team.on("/alert/state")[-1].json()
    notice = notices[0]
    assert (notice["state"], notice["severity"], notice["tier"], notice["care_team_only"]) == (
        "raised", "low", "care_team", True)
    assert notice["baseline"]["device"] == "temp-patch"
    assert notice["news2"]["scores"] == {"temperature": 0}
    # The retained state the care team reads lists it...
    assert [a["kind"] for a in alert_state["open"]] == ["temperature_trend"]
    # ...the patient's text is neutral, and neither the page nor the hub's own sound has it.
    for word in ("fever", "temperature", "call", "emergency", "score"):
        assert word not in notice["patient_message"].lower()
    view = page.status_view(clock.now)
    assert view["alerts"] == [] and not view["clinical_alerts"]
    assert page.history.markers == []
    assert annunciator.planner.selected(clock_time(12, 0)) is None


# APScheduler runs on the real clock, so the doses are in the real future (tomorrow 09:00 UTC
# and four days later); the hub's FakeClock follows them.
DOSE_1 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
DOSE_2 = DOSE_1 + timedelta(days=4)
THERAPY = {
    "product_class": "bispecific", "product": "teclistamab", "timezone": "UTC",
    "spot_check": {"enabled": True, "times": ["06:00", "14:00", "22:00"]},
    "doses": [
        {"at": DOSE_1.isoformat(), "label": "step-up 1", "kind": "step_up"},
        {"at": DOSE_2.isoformat(), "label": "step-up 2", "kind": "step_up"},
    ],
}


def expected_jobs(dose: datetime) -> dict[str, datetime]:
    """docs/protocols.md §3: 48 h after a step-up dose, reminders at 06:00, 14:00 and 22:00."""
    key = f"therapy:{dose:%Y%m%dT%H%M%SZ}"
    return {f"{key}:start": dose, f"{key}:spot-check:1400": dose + timedelta(hours=5),
            f"{key}:spot-check:2200": dose + timedelta(hours=13),
            f"{key}:spot-check:0600": dose + timedelta(hours=21),
            f"{key}:end": dose + timedelta(hours=48)}


def test_therapy_windows_and_reminders_survive_a_restart(mosquitto: Mosquitto,
                                                         tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = FakeClock(DOSE_1 - timedelta(hours=1))
    jobs: dict[str, Any] = {}

    async def first_life(care_team: Subscriber) -> None:
        hub = new_hub(data, mosquitto.port, clock, therapy=THERAPY)
        await hub.start()
        assert hub.scheduler is not None
        jobs.update({j.id: j.next_run_time for j in hub.scheduler.get_jobs()
                     if j.id.startswith("therapy:")})
        # The scheduler's own next fire times are the documented windows and reminders.
        assert jobs == expected_jobs(DOSE_1) | expected_jobs(DOSE_2)
        assert await hub.wait_connected(10)
        # 14:00 on day 1: the reminder job runs (its own function, as APScheduler calls it).
        clock.now = DOSE_1 + timedelta(hours=5)
        feed_temperature(hub, "temp-patch", 36.8)
        reminder = hub.scheduler.get_job(next(j for j in jobs if j.endswith("spot-check:1400")))
        await reminder.func(**reminder.kwargs)
        assert hub.open_alert_kinds() == [AlertKind.SPOT_CHECK_REMINDER]
        feed_temperature(hub, "temp-patch", 36.8)  # a patch is not a thermometer reading
        assert hub.open_alert_kinds() == [AlertKind.SPOT_CHECK_REMINDER]
        hub.heartbeat()
        assert await until(lambda: any(
            m.json().get("therapy") for m in care_team.on("/status")), 10)
        assert await until(lambda: any(e["kind"] == "spot_check_reminder"
                                       for e in care_team.events()), 10)
        await hub.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(first_life(care_team))
        status = [m.json() for m in care_team.on("/status") if m.json().get("therapy")][-1]
        reminders = [e for e in care_team.events() if e["kind"] == "spot_check_reminder"]
    assert status["therapy"]["text"] == "monitoring day 1 of 2 (after step-up 1)"
    assert (status["therapy"]["day"], status["therapy"]["of_days"]) == (1, 2)
    assert [(e["state"], e["tier"]) for e in reminders] == [("raised", "patient")]
    assert "take your temperature with a thermometer now" in reminders[0]["patient_message"]

    # Down for two days: back three hours after step-up 1's window ended.
    clock.now = DOSE_1 + timedelta(hours=51)

    async def second_life(care_team: Subscriber) -> None:
        hub = new_hub(data, mosquitto.port, clock, therapy=THERAPY)
        await hub.start()
        assert hub.scheduler is not None
        again = {j.id: j.next_run_time for j in hub.scheduler.get_jobs()
                 if j.id.startswith("therapy:")}
        # Recomputed from the config under the same ids: what is still to come.
        assert again == expected_jobs(DOSE_2)
        assert await hub.wait_connected(10)
        assert await until(lambda: any(e["kind"] == "monitoring_window_ended"
                                       for e in care_team.events()), 10)
        await hub.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(second_life(care_team))
        events = [(e["kind"], e["state"], e["tier"]) for e in care_team.events()
                  if not e["technical"]]
    # The reminder came back from the journal and the missed window end closed it; the care
    # team was told the window ended; the hours-old reminders were not given late.
    assert events == [
        ("spot_check_reminder", "cleared", "patient"),
        ("monitoring_window_ended", "raised", "care_team"),
        ("monitoring_window_ended", "cleared", "care_team"),
    ]


CUFF_AND_PATCH = [
    {"id": "bp-cuff", "profile": "blood_pressure_cuff", "address": "AA:BB:CC:DD:EE:04"},
    *PATCH,
]


def test_a_restarted_hub_relearns_both_baselines_from_its_store(mosquitto: Mosquitto,
                                                                tmp_path: Path) -> None:
    from daemon.decoding import CHARACTERISTICS
    from daemon.encoding import encode_blood_pressure

    data = tmp_path / "data"
    clock = FakeClock()
    bp = CHARACTERISTICS["blood_pressure_measurement"]

    def hub() -> Hub:
        return Hub(base_config(data, mosquitto.port, devices=CUFF_AND_PATCH,
                               thresholds=QUICK_TREND), clock=clock, tick_interval_s=3600,
                   heartbeat_interval_s=3600)

    async def first_life() -> None:
        first = hub()
        await first.start()
        for i, systolic in enumerate((124, 121, 122)):
            clock.now = T0 + timedelta(hours=i)
            first.on_payload("bp-cuff", bp, encode_blood_pressure(systolic, 70, None))
        for minute in range(60):
            clock.now = T0 + timedelta(hours=3, minutes=minute)
            feed_temperature(first, "temp-patch", 36.6 + (0.05 if minute % 2 else -0.05))
        assert first.monitor.emergency.sbp_baseline().mmhg == 122
        await first.stop()

    asyncio.run(first_life())
    clock.now = T0 + timedelta(hours=5)

    async def second_life(care_team: Subscriber) -> None:
        second = hub()
        await second.start()
        baseline = second.monitor.emergency.sbp_baseline()
        assert (baseline.mmhg, baseline.source) == (122, "learned")
        trend = second.monitor.trend.baseline("temp-patch", clock.now)
        assert trend is not None and trend.mean_c == pytest.approx(36.6, abs=0.01)
        assert trend.samples == 60
        assert await second.wait_connected(10)
        second.heartbeat()
        clock.now += timedelta(minutes=5)
        # 88 mmHg: < 90 and >= 10 below the relearned 122 -> the emergency, with its baseline
        second.on_payload("bp-cuff", bp, encode_blood_pressure(88, 60, None))
        assert await until(lambda: any(e["kind"] == "hypotension" for e in care_team.events()),
                           10)
        assert await until(lambda: any(m.json().get("sbp_baseline")
                                       for m in care_team.on("/status")), 10)
        await second.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(second_life(care_team))
        event = next(e for e in care_team.events() if e["kind"] == "hypotension")
        status = next(m.json() for m in care_team.on("/status") if m.json().get("sbp_baseline"))
    assert (event["severity"], event["tier"]) == ("emergency", "care_team")
    assert event["baseline"] == {"sbp_baseline_mmhg": 122.0, "source": "learned",
                                 "readings_used": 3, "readings_needed": 3}
    assert status["sbp_baseline"]["sbp_baseline_mmhg"] == 122.0


def test_the_scheduler_itself_fires_a_therapy_job_into_the_monitor(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    """APScheduler's own date trigger, a second from now, runs the job on the hub's loop."""
    soon = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    therapy = {**THERAPY, "doses": [{"at": soon.isoformat(), "label": "infusion",
                                     "kind": "infusion"}], "product_class": "car_t"}
    clock = FakeClock(soon - timedelta(seconds=2))

    async def life(care_team: Subscriber) -> None:
        hub = new_hub(tmp_path / "data", mosquitto.port, clock, therapy=therapy)
        await hub.start()
        assert await hub.wait_connected(10)
        assert await until(lambda: any(e["kind"] == "monitoring_window_started"
                                       for e in care_team.events()), 10)
        await hub.stop()

    with Subscriber(mosquitto.port) as care_team:
        asyncio.run(life(care_team))
        started = [e for e in care_team.events() if e["kind"] == "monitoring_window_started"]
    # CAR-T: 14 days (FDA, June 2025); care team only, raised and cleared as one notice
    assert [(e["state"], e["tier"], e["value"]) for e in started] == [
        ("raised", "care_team", 14.0), ("cleared", "care_team", 14.0)]
