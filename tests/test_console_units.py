"""The console's pure parts: config errors, passwords and sessions, the needs-action order,
deduplication by event_id, parsing of documented payloads, the SVG chart, --watch lines."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.alerts import AlertKind, AlertState, Severity
from daemon.config import ConfigError
from daemon.console.chart import vitals_svg
from daemon.console.config import parse_console_config
from daemon.console.credentials import Sessions, hash_password, verify_password
from daemon.console.history import History
from daemon.console.main import event_line
from daemon.console.service import MalformedMessage, parse_message
from daemon.console.ward import Ward
from daemon.payloads import AlertEvent, AlertStateSnapshot, HubStatus, OpenAlert, Tier, VitalsSample

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HASH = hash_password("s3cret-pass")


def config_data(tmp_path: Path) -> dict[str, object]:
    return {
        "console": {"data_dir": str(tmp_path)},
        "mqtt": {"port": 1883, "username": "console-1"},
        "teams": [{"id": "team-a", "patients": [{"hub": "hub-1", "patient": "p-1"}]}],
        "nurses": [{"username": "nurse-ana", "team": "team-a", "password_hash": HASH}],
    }


def event(alert_id: str, state: AlertState = AlertState.RAISED, *, kind: AlertKind =
          AlertKind.FEVER, severity: Severity = Severity.HIGH, at: datetime = NOW,
          hub: str = "hub-1", patient: str = "p-1", event_id: str | None = None,
          acknowledged_by: str | None = None, tier: Tier = Tier.PATIENT) -> AlertEvent:
    return AlertEvent(event_id=event_id or f"{alert_id}-{state}-{at.timestamp()}",
                      alert_id=alert_id, hub_id=hub, patient_id=patient, kind=kind, state=state,
                      severity=severity, tier=tier, value=38.4, unit="°C", threshold=38.0,
                      observed_at=at, raised_at=at, event_at=at, device="temp-patch",
                      patient_message="call", acknowledged_by=acknowledged_by,
                      technical=kind.is_technical)


# --- config ---------------------------------------------------------------------------------

def test_shipped_example_config_is_valid() -> None:
    from daemon.console.config import load_console_config

    example = Path(__file__).resolve().parent.parent / "deploy" / "clinic" / "console.example.toml"
    config = load_console_config(example)
    assert [t.id for t in config.teams] == ["team-oncology"]
    assert config.nurses[0].username == "nurse-ana"


def test_config_accepts_the_example_shape(tmp_path: Path) -> None:
    config = parse_console_config(config_data(tmp_path))
    team = config.team_of("nurse-ana")
    assert team is not None and team.id == "team-a"
    assert config.team_of("nobody") is None


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["console"].update(colour="red"), "console.colour: unknown key"),
    (lambda d: d["nurses"][0].update(team="team-x"), "unknown team 'team-x'"),
    (lambda d: d["nurses"][0].update(username="response"), "nurses[0].username"),
    (lambda d: d["nurses"][0].update(password_hash="hunter2"), "not a scrypt hash"),
    (lambda d: d["teams"][0]["patients"][0].update(hub="Hub A"), "teams[0].patients[0].hub"),
    (lambda d: d.update(teams=[]), "teams: List should have at least 1 item"),
])
def test_config_problems_name_the_field(tmp_path: Path, change: object, problem: str) -> None:
    data = config_data(tmp_path)
    change(data)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        parse_console_config(data)
    assert any(problem in line for line in info.value.problems), info.value.problems


def test_bad_config_exits_2_with_path_and_reason_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "console.toml"
    path.write_text('[console]\ndata_dir = "/tmp/x"\nlisten_port = 99999\n'
                    '[mqtt]\nport = 1883\n[[teams]]\nid = "team-a"\n')
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "console", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "console.listen_port: Input should be less than or equal to 65535" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hash_password_from_stdin_verifies() -> None:
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "console", "--hash-password"],
                          input="pa55-word\n", capture_output=True, text=True, timeout=60,
                          check=True)
    stored = proc.stdout.strip()
    assert stored.startswith("scrypt$") and "pa55-word" not in stored
    assert verify_password("pa55-word", stored)
    assert not verify_password("pa55-wore", stored)


# --- credentials ----------------------------------------------------------------------------

def test_passwords_are_salted_scrypt() -> None:
    assert hash_password("x") != hash_password("x")
    assert verify_password("s3cret-pass", HASH)
    assert not verify_password("s3cret-pass ", HASH)
    assert not verify_password("s3cret-pass", "scrypt$1$1$1$bad$bad")


def test_sessions_expire_after_ttl_and_idle() -> None:
    sessions = Sessions(ttl_s=100, idle_s=30)
    session = sessions.open("nurse-ana", 0.0)
    assert sessions.get(session.token, 20.0) is session
    assert sessions.get(session.token, 45.0) is session  # idle restarted at 20
    assert sessions.get(session.token, 80.0) is None  # idle 35 s
    other = sessions.open("nurse-ana", 0.0)
    for t in range(10, 101, 10):
        assert sessions.get(other.token, float(t)) is other
    assert sessions.get(other.token, 101.0) is None  # absolute lifetime
    assert session.token not in repr(session) and session.csrf not in repr(session)


# --- needs-action order ---------------------------------------------------------------------

def ward_of(n: int) -> Ward:
    return Ward([(f"hub-{i}", f"p-{i}", "team-a") for i in range(n)])


def online(ward: Ward, hub: str, at: datetime = NOW) -> None:
    ward.apply_hub_status(HubStatus(hub_id=hub, state="online", version="1", heartbeat_at=at))


def test_order_clinical_then_technical_then_acknowledged_then_clear() -> None:
    ward = ward_of(8)
    for i in range(8):
        online(ward, f"hub-{i}")
    ward.apply_event(event("a-med", severity=Severity.MEDIUM, kind=AlertKind.TACHYCARDIA,
                           hub="hub-1", patient="p-1"))
    ward.apply_event(event("a-crit-new", severity=Severity.CRITICAL, hub="hub-2", patient="p-2"))
    ward.apply_event(event("a-crit-old", severity=Severity.CRITICAL, hub="hub-3", patient="p-3",
                           at=NOW - timedelta(minutes=20)))
    ward.apply_event(event("a-crit-team", severity=Severity.CRITICAL, hub="hub-7",
                           patient="p-7", tier=Tier.CARE_TEAM))
    ward.apply_event(event("a-batt", kind=AlertKind.BATTERY_LOW, severity=Severity.LOW,
                           hub="hub-4", patient="p-4"))
    ward.apply_hub_status(HubStatus(hub_id="hub-5", state="offline", version="1"))
    ward.apply_event(event("a-ack", hub="hub-6", patient="p-6", state=AlertState.ACKNOWLEDGED,
                           acknowledged_by="nurse-ana"))
    order = [row.patient.patient_id for row in ward.rows(NOW, 90)]
    assert order == ["p-7", "p-3", "p-2", "p-1", "p-5", "p-4", "p-6", "p-0"]
    assert [row.group for row in ward.rows(NOW, 90)] == [0, 0, 0, 0, 1, 1, 2, 3]


def test_stale_heartbeat_is_a_technical_problem() -> None:
    ward = ward_of(2)
    online(ward, "hub-0", NOW - timedelta(seconds=200))
    online(ward, "hub-1", NOW - timedelta(seconds=10))
    rows = ward.rows(NOW, 90)
    assert [(r.patient.patient_id, r.health, r.group) for r in rows] == [
        ("p-0", "stale", 1), ("p-1", "online", 3)]


def test_cleared_alert_leaves_and_state_snapshot_is_authoritative() -> None:
    ward = ward_of(1)
    ward.apply_event(event("a1", at=NOW - timedelta(minutes=5)))
    ward.apply_event(event("a1", AlertState.CLEARED, at=NOW))
    ward = Ward([("hub-1", "p-1", "team-a")])
    ward.apply_event(event("a1", at=NOW - timedelta(minutes=5)))
    assert set(ward.patients[("hub-1", "p-1")].alerts) == {"a1"}
    ward.apply_event(event("a1", AlertState.CLEARED, at=NOW))
    assert ward.patients[("hub-1", "p-1")].alerts == {}
    ward.apply_state(AlertStateSnapshot(hub_id="hub-1", patient_id="p-1", updated_at=NOW, open=[
        OpenAlert(alert_id="a2", kind=AlertKind.NO_DATA, severity=Severity.MEDIUM,
                  tier=Tier.CAREGIVER, value=None, unit="min", raised_at=NOW, updated_at=NOW,
                  device=None, patient_message="x")]))
    (alert,) = ward.patients[("hub-1", "p-1")].alerts.values()
    assert alert.alert_id == "a2" and alert.technical


def test_unknown_patient_is_counted_not_shown() -> None:
    ward = ward_of(1)
    assert not ward.apply_event(event("a1", hub="hub-9", patient="p-9"))
    assert ward.counters.unknown_patient == 1
    assert all(not row.patient.alerts for row in ward.rows(NOW, 90))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(list(Severity)),
                          st.booleans(), st.integers(0, 3600)), max_size=20))
def test_every_unacknowledged_clinical_alert_ranks_above_any_patient_without_one(
        alerts: list[tuple[int, Severity, bool, int]]) -> None:
    ward = ward_of(6)
    for i in range(6):
        online(ward, f"hub-{i}")
    for n, (i, severity, clinical, age) in enumerate(alerts):
        kind = AlertKind.FEVER if clinical else AlertKind.NO_DATA
        ward.apply_event(event(f"a{n}", kind=kind, severity=severity, hub=f"hub-{i}",
                               patient=f"p-{i}", at=NOW - timedelta(seconds=age)))
    rows = ward.rows(NOW, 90)
    flags = [bool(row.patient.clinical()) for row in rows]
    assert flags == sorted(flags, reverse=True)
    clinical_rows = [row for row in rows if row.patient.clinical()]
    worst = [max(a.severity.rank for a in row.patient.clinical()) for row in clinical_rows]
    assert worst == sorted(worst, reverse=True)


# --- history and parsing --------------------------------------------------------------------

def test_history_keeps_one_row_per_event_id(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    first = event("a1", event_id="e-1")
    assert history.add_event(first, NOW)
    assert not history.add_event(first, NOW + timedelta(seconds=5))
    assert history.add_event(event("a1", AlertState.CLEARED, event_id="e-2",
                                   at=NOW + timedelta(minutes=1)), NOW)
    assert [e.event_id for e in history.events("hub-1", "p-1")] == ["e-2", "e-1"]
    history.close()
    reopened = History(tmp_path / "h.sqlite3")
    assert not reopened.add_event(first, NOW)  # survives a console restart
    assert reopened.event_count() == 2


def test_parse_message_checks_topic_against_payload() -> None:
    payload = event("a1").to_json()
    parsed = parse_message("crs/v1", "crs/v1/hub-1/p-1/alert/event", payload)
    assert parsed is not None and parsed.kind == "alert_event"
    with pytest.raises(MalformedMessage, match="differ from the topic"):
        parse_message("crs/v1", "crs/v1/hub-2/p-1/alert/event", payload)
    with pytest.raises(MalformedMessage, match="not_json"):
        parse_message("crs/v1", "crs/v1/hub-1/status", b"{nope")
    with pytest.raises(MalformedMessage, match="too_deep"):  # json.loads would recurse
        parse_message("crs/v1", "crs/v1/hub-1/status", b"[" * 100_000)
    with pytest.raises(MalformedMessage, match="too_large"):
        parse_message("crs/v1", "crs/v1/hub-1/p-1/vitals", b" " * (300 * 1024))
    with pytest.raises(MalformedMessage, match="severity"):
        parse_message("crs/v1", "crs/v1/hub-1/p-1/alert/event",
                      payload.replace(b'"high"', b'"dire"'))
    assert parse_message("crs/v1", "crs/v1/hub-1/p-1/alert/state", b"") is None  # retain clear
    status = parse_message("crs/v1", "crs/v1/hub-1/status",
                           b'{"hub_id":"hub-1","state":"online","version":"1","therapy_day":9}')
    assert status is not None and status.therapy_day == 9


def test_chart_draws_both_series_threshold_and_escaped_markers() -> None:
    samples = [VitalsSample(observed_at=NOW - timedelta(minutes=m), temperature_c=37 + m / 100,
                            heart_rate_bpm=80 + m / 10) for m in range(0, 600, 10)]
    svg = str(vitals_svg(samples, [event("a1", at=NOW - timedelta(hours=2))],
                         NOW - timedelta(hours=24), NOW))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and 'class="threshold"' in svg
    assert svg.count('class="marker raised"') == 1 and "fever raised (high)" in svg
    assert "<script" not in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    empty = str(vitals_svg([], [], NOW - timedelta(days=7), NOW))
    assert empty.count("no readings in this period") == 2


def test_watch_line_is_one_line_with_severity_and_ack_by_id() -> None:
    raised = event_line(event("a1"))
    assert "\n" not in raised
    assert raised.startswith("2026-12-01T12:00:00Z HIGH fever raised hub-1/p-1 38.4 °C")
    assert "alert=a1" in raised and "call" not in raised
    acked = event_line(event("a1", AlertState.ACKNOWLEDGED, acknowledged_by="nurse-ana"))
    assert acked == "2026-12-01T12:00:00Z ACK a1 by nurse-ana hub-1/p-1 fever"


@pytest.mark.parametrize(("extra", "problem"), [
    ('password_file = "/nonexistent/pw"', "mqtt.password_file: cannot read /nonexistent/pw"),
    ('password_env = "CRS_TEST_UNSET_VAR"', "mqtt.password_env: CRS_TEST_UNSET_VAR is not set"),
])
def test_missing_secret_exits_2_naming_the_field(tmp_path: Path, extra: str, problem: str) -> None:
    path = tmp_path / "console.toml"
    path.write_text(f'[console]\ndata_dir = "{tmp_path}/d"\n[mqtt]\nusername = "c"\n{extra}\n'
                    '[[teams]]\nid = "team-a"\n')
    env = {k: v for k, v in __import__("os").environ.items() if k != "CRS_TEST_UNSET_VAR"}
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "console", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 2 and problem in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unusable_data_dir_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = tmp_path / "console.toml"
    path.write_text(f'[console]\ndata_dir = "{blocker}/d"\n[mqtt]\n[[teams]]\nid = "team-a"\n')
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "console", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "console.data_dir: cannot open the history" in proc.stderr
    assert "Traceback" not in proc.stderr


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["crs/v1/hub-1/status", "crs/v1/hub-1/p-1/alert/event",
                        "crs/v1/hub-1/p-1/alert/state", "crs/v1/hub-1/p-1/device/d-1/status",
                        "crs/v1/hub-1/p-1/vitals", "crs/v1/hub-1/p-1/other", "elsewhere/x"]),
       st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda kids: st.lists(kids, max_size=4)
                              | st.dictionaries(st.text(max_size=12), kids, max_size=5),
                              max_leaves=12).map(lambda v: __import__("json").dumps(v).encode())))
def test_any_payload_parses_or_is_malformed_never_crashes(topic: str, payload: bytes) -> None:
    try:
        parsed = parse_message("crs/v1", topic, payload)
    except MalformedMessage as exc:
        assert str(exc)  # a reason to log
        return
    kinds = {"crs/v1/hub-1/status": "hub_status", "crs/v1/hub-1/p-1/alert/event": "alert_event",
             "crs/v1/hub-1/p-1/alert/state": "alert_state", "crs/v1/hub-1/p-1/vitals": "vitals",
             "crs/v1/hub-1/p-1/device/d-1/status": "device_status"}
    # Only a documented topic yields a model, and of that topic's kind.
    assert (parsed.kind if parsed else None) in (None, kinds.get(topic))
    if topic not in kinds:
        assert parsed is None
