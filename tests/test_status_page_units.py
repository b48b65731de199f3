"""Pure parts of the status page: the access code and its store, sessions, the wrong-code limit,
the thermometer input, the symptom names, and the server-drawn chart."""

from __future__ import annotations

import json
import re
import stat
import tracemalloc
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.access_code import (
    ACCESS_FILE,
    AccessCode,
    AccessCodeMissing,
    SessionStore,
    WrongCodeLimiter,
    generate_code,
)
from daemon.cli import main
from daemon.patient_reports import SYMPTOMS, ReportError, parse_temperature
from daemon.readings import Reading, Vital
from daemon.status_page import StatusPageSettings, age_words, tel_href
from daemon.store import JournalEntry, Store
from daemon.vitals_chart import (
    ChartScale,
    MinuteSeries,
    VitalsHistory,
    load_history,
    render_chart,
)

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# --- access code ---------------------------------------------------------------------------

def test_generated_codes_are_12_digits_in_groups_and_differ() -> None:
    codes = {generate_code() for _ in range(50)}
    assert len(codes) == 50
    assert all(re.fullmatch(r"\d{4}-\d{4}-\d{4}", c) for c in codes)


def test_only_a_hash_is_stored_owner_only_and_it_verifies(tmp_path: Path) -> None:
    code = "4821-7730-1195"
    path = AccessCode.from_code(code).save(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "4821-7730-1195" not in text and "482177301195" not in text
    stored = AccessCode.load(tmp_path)
    assert stored.verify(code)
    assert stored.verify("4821 7730 1195") and stored.verify("482177301195")
    assert not stored.verify("4821-7730-1196")
    assert not stored.verify("")
    assert not stored.verify("4" * 100)
    # A second code for the same hub gets its own salt.
    again = AccessCode.from_code(code)
    assert again.salt != stored.salt and again.digest != stored.digest


def test_missing_or_broken_code_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AccessCodeMissing, match="does not exist"):
        AccessCode.load(tmp_path)
    (tmp_path / ACCESS_FILE).write_text("{not json")
    with pytest.raises(AccessCodeMissing, match="cannot be used"):
        AccessCode.load(tmp_path)
    (tmp_path / ACCESS_FILE).write_text(json.dumps({"kdf": "md5", "salt": "", "hash": ""}))
    with pytest.raises(AccessCodeMissing, match="unknown kdf"):
        AccessCode.load(tmp_path)
    weak = json.loads(AccessCode.from_code("1").to_json()) | {"iterations": 1000}
    (tmp_path / ACCESS_FILE).write_text(json.dumps(weak))
    with pytest.raises(AccessCodeMissing, match="too weak"):
        AccessCode.load(tmp_path)


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[hub]\nid = "hub-x"\ndata_dir = "{tmp_path / "data"}"\n'
                    '[patient]\nid = "p-1"\ncare_team_name = "the team"\n'
                    'care_team_phone = "+1 555 0100"\n')
    return path


def test_access_code_command_prints_the_code_once_and_rotates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    assert main(["access-code", "--config", str(config)]) == 0
    first = re.search(r"access code: (\d{4}-\d{4}-\d{4})", capsys.readouterr().out)
    assert first is not None
    assert AccessCode.load(tmp_path / "data").verify(first.group(1))
    # The installer's form keeps an existing code.
    assert main(["access-code", "--config", str(config), "--if-missing"]) == 0
    assert "already set" in capsys.readouterr().out
    assert AccessCode.load(tmp_path / "data").verify(first.group(1))
    # Run again: a new code, and the old one stops working.
    assert main(["access-code", "--config", str(config)]) == 0
    second = re.search(r"access code: (\d{4}-\d{4}-\d{4})", capsys.readouterr().out)
    assert second is not None and second.group(1) != first.group(1)
    stored = AccessCode.load(tmp_path / "data")
    assert stored.verify(second.group(1)) and not stored.verify(first.group(1))


def test_access_code_command_with_a_bad_config_names_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[hub]\nid = "Bad Name"\n')
    assert main(["access-code", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hub.id:" in err and "patient: required key is missing" in err


# --- sessions and the wrong-code limit -------------------------------------------------------

def test_sessions_expire_and_stay_bounded() -> None:
    ticks = Ticks()
    store = SessionStore(lifetime_s=3600, clock=ticks, max_sessions=4, anonymous_lifetime_s=60)
    patient = store.new(authenticated=True)
    anonymous = store.new(authenticated=False)
    assert store.get(patient.token) is patient and store.get(anonymous.token) is anonymous
    assert patient.csrf != anonymous.csrf and len(patient.token) >= 40
    ticks.t += 61
    assert store.get(anonymous.token) is None  # the login form's session is short
    assert store.get(patient.token) is patient
    # A flood of login-page visits evicts anonymous sessions, never the patient's.
    for _ in range(10):
        store.new(authenticated=False)
    assert len(store) == 4 and store.get(patient.token) is patient
    ticks.t += 3600
    assert store.get(patient.token) is None
    assert store.get(None) is None and store.get("made-up") is None


def test_wrong_codes_lock_a_client_out_for_the_window() -> None:
    ticks = Ticks()
    limiter = WrongCodeLimiter(max_failures=5, window_s=900, clock=ticks)
    for n in range(1, 6):
        assert limiter.retry_after_s("10.0.0.2") == 0
        assert limiter.failed("10.0.0.2") == n
        ticks.t += 10
    assert limiter.retry_after_s("10.0.0.2") == pytest.approx(900 - 50)
    assert limiter.retry_after_s("10.0.0.3") == 0  # another phone is not locked out
    ticks.t += 851
    assert limiter.retry_after_s("10.0.0.2") == 0


def test_wrong_codes_from_many_addresses_lock_everyone_out() -> None:
    ticks = Ticks()
    limiter = WrongCodeLimiter(max_failures=5, window_s=900, clock=ticks)
    for n in range(20):
        limiter.failed(f"10.0.1.{n}")
    assert limiter.retry_after_s("10.0.9.9") > 0


def test_settings_defaults_and_tls_pair() -> None:
    settings = StatusPageSettings()
    assert (settings.enabled, settings.host, settings.port) == (True, "0.0.0.0", 8080)
    assert settings.session_lifetime_h == 12
    with pytest.raises(ValueError, match="go together"):
        StatusPageSettings(tls_cert_file=Path("/etc/x.crt"))
    with pytest.raises(ValueError):
        StatusPageSettings(colour="red")  # type: ignore[call-arg]


# --- words --------------------------------------------------------------------------------

def test_tel_links_keep_only_digits_and_a_leading_plus() -> None:
    assert tel_href("+1 555 0100") == "tel:+15550100"
    assert tel_href("(020) 7946-0018") == "tel:02079460018"
    assert tel_href("911") == "tel:911"


def test_age_words() -> None:
    assert age_words(5) == "less than a minute ago"
    assert age_words(60) == "1 minute ago"
    assert age_words(25 * 60 + 59) == "25 minutes ago"
    assert age_words(3600) == "1 hour ago"
    assert age_words(2 * 3600 + 5 * 60) == "2 hours 5 min ago"
    assert age_words(5 * 86400) == "5 days ago"


def test_symptoms_are_the_documented_names_with_emergency_ones_marked() -> None:
    assert [s.name for s in SYMPTOMS] == ["trouble_breathing", "dizziness_fainting",
                                          "confusion", "chills", "severe_headache",
                                          "nausea_vomiting", "rash"]
    assert {s.name for s in SYMPTOMS if s.emergency} == {"trouble_breathing",
                                                         "dizziness_fainting", "confusion"}
    assert all("_" not in s.words for s in SYMPTOMS)


# --- thermometer input -----------------------------------------------------------------------

@given(st.floats(min_value=32.0, max_value=44.0), st.sampled_from(["C", "F"]),
       st.sampled_from(["{}", "{} ", "{}°", " {} °{u}", "{}{u}"]), st.booleans())
def test_any_plausible_reading_parses_back(celsius: float, unit: str, shape: str,
                                           comma: bool) -> None:
    shown = celsius if unit == "C" else celsius * 9 / 5 + 32
    text = shape.format(f"{shown:.1f}", u=unit)
    if comma:
        text = text.replace(".", ",")
    try:
        parsed = parse_temperature(text, unit)
    except ReportError:
        # Only the rounding at the range's edges may push a value out.
        assert not 32.05 < celsius < 43.95
        return
    assert parsed == pytest.approx(celsius, abs=0.06)


@pytest.mark.parametrize(("text", "unit", "message"), [
    ("", "C", "Type the number"),
    ("abc", "C", "not a number"),
    ("nan", "C", "not a number"),
    ("1e308", "C", "cannot be right"),
    ("38.6.1", "C", "not a number"),
    ("101.5", "C", "Did you mean °F?"),
    ("38.6", "F", "Did you mean °C?"),
    ("25", "C", "between 32 and 44 °C"),
    ("200", "F", "between 90 and 111 °F"),
    ("38.6", "K", "Choose °C or °F"),
    ("3" * 20, "C", "not a temperature"),
])
def test_bad_readings_get_a_sentence_the_patient_can_act_on(text: str, unit: str,
                                                            message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)):
        parse_temperature(text, unit)


# --- chart ------------------------------------------------------------------------------------

SCALE = ChartScale(38.0, 39.0, 100.0, False, UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_chart_draws_both_vitals_thresholds_and_markers() -> None:
    history = VitalsHistory()
    history.add_readings([Reading("patch", Vital.TEMPERATURE, 37.0 + m / 600, NOW - timedelta(
        minutes=600 - m)) for m in range(0, 600, 2)])
    history.add_readings([Reading("strap", Vital.HEART_RATE, 80, NOW - timedelta(minutes=m),
                                  True) for m in range(60)])
    history.add_marker(NOW - timedelta(minutes=30), "fever")
    root = parse(render_chart(history, NOW, SCALE))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "chart-title chart-desc"
    lines = root.findall(f"{SVG}polyline")
    assert {p.get("stroke") for p in lines} == {"#a50e0e", "#0b4f8a"}
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"fever 38", "high fever 39", "fast 100"} <= set(labels)
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert "Temperature: highest 38.0 °C" in desc.text
    assert "Heart rate: highest 80 bpm" in desc.text
    assert "alert at 19:30: fever" in desc.text
    assert len(root.findall(f"{SVG}path")) == 1  # one marker


def test_chart_breaks_the_line_at_gaps_and_skips_off_body_readings() -> None:
    history = VitalsHistory()
    minutes = [*range(0, 30), *range(90, 120)]  # an hour without readings in between
    history.add_readings([Reading("patch", Vital.TEMPERATURE, 37.0, NOW - timedelta(
        minutes=200 - m)) for m in minutes])
    history.add_readings([Reading("patch", Vital.TEMPERATURE, 30.0, NOW, sensor_contact=False)])
    root = parse(render_chart(history, NOW, SCALE))
    temps = [p for p in root.findall(f"{SVG}polyline") if p.get("stroke") == "#a50e0e"]
    assert len(temps) == 2
    desc = root.find(f"{SVG}desc")
    assert desc is not None and "latest 37.0 °C" in str(desc.text)
    assert "Heart rate: no readings in the last 24 hours" in str(desc.text)


def test_chart_in_fahrenheit_and_older_than_a_day_is_dropped() -> None:
    history = VitalsHistory()
    history.add_readings([Reading("patch", Vital.TEMPERATURE, 38.5, NOW - timedelta(hours=30)),
                          Reading("patch", Vital.TEMPERATURE, 38.5, NOW - timedelta(hours=1))])
    history.add_marker(NOW - timedelta(hours=25), "fever")
    svg = render_chart(history, NOW, ChartScale(38.0, 39.0, 100.0, True, UTC))
    root = parse(svg)
    assert "fever 100.4" in [t.text for t in root.iter(f"{SVG}text")]
    desc = str(root.find(f"{SVG}desc").text)  # type: ignore[union-attr]
    assert "highest 101.3 °F" in desc and "No alerts in the last 24 hours" in desc
    assert not root.findall(f"{SVG}path")


def test_chart_escapes_every_text() -> None:
    history = VitalsHistory()
    history.add_marker(NOW, "<script>alert(1)</script>")
    svg = render_chart(history, NOW, SCALE)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    parse(svg)


def test_history_is_bounded_to_a_day_of_minutes() -> None:
    history = VitalsHistory()
    start = NOW - timedelta(hours=48)
    history.add_readings([Reading("patch", Vital.TEMPERATURE, 37.0, start + timedelta(seconds=s))
                          for s in range(0, 48 * 3600, 20)])
    assert len(history.temperature) == 24 * 60


@given(st.lists(st.tuples(st.integers(0, 3 * 24 * 60), st.floats(30.0, 200.0)), max_size=300))
def test_minute_series_matches_a_plain_per_minute_table(adds: list[tuple[int, float]]) -> None:
    """In any order (late manual readings, history loaded after live data), the series holds
    exactly the per-minute means a plain dict would, trimmed to the day before each reading."""
    series = MinuteSeries()
    table: dict[int, tuple[float, int]] = {}
    for minute, value in adds:
        series.add(datetime.fromtimestamp(minute * 60 + 7, UTC), value)
        total, n = table.get(minute, (0.0, 0))
        table[minute] = (total + value, n + 1)
        table = {m: v for m, v in table.items() if m > minute - 24 * 60}
    expected = [(m, total / n) for m, (total, n) in sorted(table.items())]
    got = series.points(-1)
    assert [m for m, _ in got] == [m for m, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected])
    assert len(series) == len(expected)
    if expected:
        since = expected[len(expected) // 2][0]
        assert [m for m, _ in series.points(since)] == [m for m, _ in expected if m > since]


def test_a_day_of_one_hertz_readings_takes_tens_of_kilobytes() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        series = MinuteSeries()
        for second in range(24 * 3600):
            series.add(NOW + timedelta(seconds=second), 37.0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(series) == 24 * 60
    assert held < 80_000, held  # a dict of (sum, count) tuples held about 310 kB


def test_history_loads_from_the_store_read_only(tmp_path: Path) -> None:
    db = tmp_path / "crs-hub.sqlite3"
    store = Store(db)
    store.add_readings([
        Reading("patch", Vital.TEMPERATURE, 38.4, NOW - timedelta(hours=2)),
        Reading("patch", Vital.TEMPERATURE, 31.0, NOW - timedelta(hours=1)),  # off the skin
        Reading("strap", Vital.HEART_RATE, 112, NOW - timedelta(hours=1)),
        Reading("patch", Vital.TEMPERATURE, 37.0, NOW - timedelta(hours=30)),  # too old
        Reading("patch", Vital.BATTERY, 80, NOW - timedelta(hours=1)),
    ])
    store.record_transition(JournalEntry(0, "a1", "e1", "raised", "fever", "high",
                                         NOW - timedelta(hours=2), "hub", "{}"), [])
    store.record_transition(JournalEntry(0, "a2", "e2", "raised", "no_data", "low",
                                         NOW - timedelta(hours=2), "hub", "{}"), [])
    store.flush()
    history = load_history(db, NOW, off_body_below_c=34.0, marker_label={"fever": "fever"})
    store.close()
    assert history.temperature.points(0) == [(int((NOW - timedelta(hours=2)).timestamp() // 60),
                                              38.4)]
    assert [v for _, v in history.heart_rate.points(0)] == [112]
    assert [(m.label, m.at) for m in history.markers] == [("fever", NOW - timedelta(hours=2))]
    assert load_history(tmp_path / "none.sqlite3", NOW, off_body_below_c=34.0,
                        marker_label={}).markers == []
