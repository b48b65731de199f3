"""``python -m bench clinical``: the rules on synthetic patient weeks, against the issue's goals.

Each patient-week (bench/synthetic_patients.py: parameters and sources there) runs through the
real pure ``daemon.monitor.Monitor`` the daemon runs: its configured devices are a temperature
patch (once a minute, the patient's calibrated site offset), a chest strap worn part-time
(``wear = "part-time"``; readings every 5 s, a decimated 1 Hz strap: the rules' 60 s gap limit is
unaffected) and an oral thermometer (spot checks). The monitor gets ``DeviceReading`` inputs
(values as the devices report them, so the reading policy's off-body and offset apply),
``ConnectionChange`` for the Bluetooth drops, outings and the strap going on and off, and a
``Tick`` every 10 s. The simulated patient reacts to the hub: an alarm about the patch (an
implausible fall, contact, disconnection, no data) makes them re-seat a displaced patch within
10-40 min and, 80 % of the time, take an oral reading within 5-30 min.

Printed per scenario: fever detection delay from the true core temperature reaching 38.0 °C
(median, p90, max, misses; an alert already open counts as 0; a missed fever the patch never
reported at fever level, three usable readings with its estimate >= 38.0 °C, is counted apart
as "unseen": out of range or off the skin, with the hub's technical alarm the only signal) beside routine oral checks every
4 h and every 8 h around the clock (the TempTraq comparison, clinical.md §3); fever alerts
cleared while the core was >= 38.0 °C; false clinical alerts per patient-day by kind (a fever
alert raised more than an hour from any fever; a tachycardia alert neither during sustained
tachycardia nor within an hour of a fever); technical alarms per patient-day by kind (raised, one
per condition); silences missed (no usable temperature from the patch for longer than its
window with no technical alarm raised or open for it); sustained tachycardia detected. Then the
issue's goals with PASS/FAIL; exit status 1 when a goal is missed.

One core, about a minute; ``--seed`` changes every patient.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from bench.synthetic_patients import (
    FEVER_C,
    SCENARIOS,
    WEEK_S,
    PatientWeek,
    Span,
    generate,
    oral_value,
)
from daemon.alerts import AlertKind, AlertState
from daemon.config import Config, parse_config
from daemon.monitor import BrokerLink, ConnectionChange, DeviceReading, Monitor, Start, Tick
from daemon.payloads import AlertEvent
from daemon.profiles import DeviceProfile, load_profiles
from daemon.readings import Vital

START = datetime(2026, 11, 2, tzinfo=UTC)
PATCH, STRAP, ORAL = "temp-patch", "chest-strap", "oral-thermometer"
PATIENTS = {"quiet": 8, "crs_onset": 10, "low_grade": 4, "short_spikes": 4,
            "sinus_tachycardia": 8}
HR_STEP_S, TICK_S = 5, 10
FEVER_KINDS = {AlertKind.FEVER, AlertKind.HIGH_FEVER, AlertKind.FEVER_TACHYCARDIA}
PATCH_PROBLEMS = {AlertKind.IMPLAUSIBLE_FALL, AlertKind.NO_DATA, AlertKind.SENSOR_CONTACT_LOST,
                  AlertKind.DEVICE_DISCONNECTED}
GOALS = (
    ("fever episodes missed", "== 0"),
    ("fever alerts cleared while febrile", "== 0"),
    ("median fever detection delay", "<= 5 min"),
    ("false fever alerts / patient-day", "<= 0.05"),
    ("false tachycardia alerts / patient-day", "<= 0.2"),
    ("technical alarms / patient-day", "<= 1.5"),
    ("silences without a technical alarm", "== 0"),
    ("sustained tachycardia detected", ">= 95 %"),
)


@dataclass
class Event:
    t_s: float
    alert_id: str
    kind: AlertKind
    state: AlertState
    device: str | None


@dataclass
class Outcome:
    week: PatientWeek
    events: list[Event] = field(default_factory=list)
    silences: list[Span] = field(default_factory=list)
    usable_minutes: set[int] = field(default_factory=set)  # a patch reading with contact


def config(offset_c: float) -> Config:
    return parse_config({
        "hub": {"id": "hub-bench", "data_dir": "/tmp/crs-hub-bench-clinical"},
        "patient": {"id": "p-bench", "care_team_name": "the care team",
                    "care_team_phone": "+1 555 0100", "emergency_number": "911"},
        "devices": [
            {"id": PATCH, "profile": "temperature_patch", "temperature_offset_c": offset_c},
            {"id": STRAP, "profile": "heart_rate_strap", "wear": "part-time"},
            {"id": ORAL, "profile": "health_thermometer"},
        ],
        "escalation": {"enabled": False},
        "vitals": {"publish": False},
    })


def _in(spans: list[Span], t: float) -> bool:
    return any(s.start_s <= t < s.end_s for s in spans)


def run_week(week: PatientWeek, profiles: dict[str, DeviceProfile], seed: int) -> Outcome:
    rng = Random(seed)
    monitor = Monitor(config(week.offset_c), profiles, new_id=_ids(week.pid))
    out = Outcome(week)
    at = START
    handle = monitor.handle

    def record(t_s: float, result_events: list[AlertEvent]) -> None:
        for e in result_events:
            out.events.append(Event(t_s, e.alert_id, e.kind, e.state, e.device))
            if (e.state in (AlertState.RAISED, AlertState.SEVERITY_CHANGED)
                    and e.device in (PATCH, None) and e.kind in PATCH_PROBLEMS):
                react(t_s)

    pending_oral: list[int] = []
    reseat_at: dict[int, int] = {}  # displacement index -> minute the patient re-seats it

    def react(t_s: float) -> None:
        if _in(week.outings, t_s):
            return  # away from home: nothing to re-seat or measure with
        m = int(t_s // 60)
        for i, d in enumerate(week.displacements):
            if d.start_min <= m < min(d.natural_end_min, reseat_at.get(i, 10**9)):
                reseat_at[i] = min(reseat_at.get(i, 10**9), m + rng.randint(10, 40))
        if not pending_oral and rng.random() < 0.8:
            pending_oral.append(int(t_s) + rng.randint(5, 30) * 60)

    record(0, handle(Start(at)).events)
    record(0, handle(BrokerLink(True, at)).events)
    oral = list(week.oral_checks)
    oi = 0
    patch_connected = strap_connected = False
    strap_off_since: int | None = None
    last_good_patch = 0
    for s in range(0, WEEK_S, HR_STEP_S):
        at = START + timedelta(seconds=s)
        m = s // 60
        away = _in(week.outings, s)
        # -- the patch -------------------------------------------------------------------
        want = not away and not _in(week.ble_drops, s)
        if want != patch_connected:
            patch_connected = want
            record(s, handle(ConnectionChange(PATCH, want, at)).events)
        if patch_connected and s % 60 == 0:
            raw = week.patch_skin[m] + week.blanket[m] - week.shower[m] + rng.gauss(0, 0.05)
            for i, d in enumerate(week.displacements):
                end = min(d.natural_end_min, reseat_at.get(i, 10**9))
                if d.start_min <= m < end:
                    raw -= d.depth_c * min(1.0, (m - d.start_min + 1) / d.ramp_min)
            result = handle(DeviceReading(PATCH, Vital.TEMPERATURE, round(raw, 2), None, at))
            if any(r.sensor_contact is not False for r in result.readings):
                out.usable_minutes.add(m)
                if s - last_good_patch > 600:
                    out.silences.append(Span(last_good_patch, s))
                last_good_patch = s
            record(s, result.events)
        # -- the strap (part-time) -------------------------------------------------------
        worn = _in(week.strap_on, s)
        if worn and not away:
            strap_off_since = None
            if not strap_connected:
                strap_connected = True
                record(s, handle(ConnectionChange(STRAP, True, at)).events)
            noise = 5.0 if week.walking[m] else 3.0
            bpm = round(week.hr[m] + rng.gauss(0, noise))
            record(s, handle(DeviceReading(STRAP, Vital.HEART_RATE, bpm, True, at)).events)
        elif strap_connected:
            strap_off_since = s if strap_off_since is None else strap_off_since
            if away or s - strap_off_since >= 45:
                strap_connected = False
                record(s, handle(ConnectionChange(STRAP, False, at)).events)
            else:  # taken off: the strap reports no skin contact, then powers down
                record(s, handle(DeviceReading(STRAP, Vital.HEART_RATE, 0, False, at)).events)
        # -- oral readings ---------------------------------------------------------------
        while oi < len(oral) and oral[oi] <= s:
            if not _in(week.outings, oral[oi]):
                value = oral_value(rng, week.core[m])
                record(s, handle(DeviceReading(ORAL, Vital.TEMPERATURE, value, None, at)).events)
            oi += 1
        if pending_oral and pending_oral[0] <= s:
            pending_oral.clear()
            value = oral_value(rng, week.core[m])
            record(s, handle(DeviceReading(ORAL, Vital.TEMPERATURE, value, None, at)).events)
        if s % TICK_S == 0:
            record(s, handle(Tick(at)).events)
    if WEEK_S - last_good_patch > 600:
        out.silences.append(Span(last_good_patch, WEEK_S))
    return out


def _ids(prefix: str) -> Callable[[], str]:
    n = 0

    def new_id() -> str:
        nonlocal n
        n += 1
        return f"{prefix}-{n}"

    return new_id


# -- scoring ---------------------------------------------------------------------------------


def _alert_spans(events: list[Event], kinds: set[AlertKind]) -> list[tuple[float, float]]:
    """(raised, cleared or end of week) of each alert of these kinds."""
    opened: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for e in events:
        if e.kind not in kinds:
            continue
        if e.state is AlertState.RAISED:
            opened[e.alert_id] = e.t_s
        elif e.state is AlertState.CLEARED and e.alert_id in opened:
            spans.append((opened.pop(e.alert_id), e.t_s))
    spans += [(t, float(WEEK_S)) for t in opened.values()]
    return sorted(spans)


def _delay_min(alerts: list[tuple[float, float]], fever: Span) -> float | None:
    """Minutes from the core reaching 38.0 °C to the first fever alert (0 if one is open)."""
    for raised, cleared in alerts:
        if raised <= fever.start_s < cleared:
            return 0.0
        if fever.start_s <= raised <= fever.end_s:
            return (raised - fever.start_s) / 60
    return None


def _seen_by_patch(outcome: Outcome, fever: Span) -> bool:
    """Whether the patch delivered at least three usable readings at fever level (its estimate
    without noise >= 38.0 °C) during the fever: what confirmation needs, with one to spare."""
    week = outcome.week
    hot = sum(1 for m in range(fever.start_s // 60, fever.end_s // 60 + 1)
              if m in outcome.usable_minutes and week.patch_skin[m] + week.offset_c >= FEVER_C)
    return hot >= 3


def _sensor_delay_min(week: PatientWeek, fever: Span) -> float | None:
    """Minutes until the patch's own estimate (skin + configured offset, before noise and
    artifacts) reaches 38.0 °C: the part of the delay no rule can remove."""
    for m in range(fever.start_s // 60, fever.end_s // 60 + 1):
        if week.patch_skin[m] + week.offset_c >= FEVER_C:
            return float(m - fever.start_s // 60)
    return None


def _oral_delay_min(week: PatientWeek, fever: Span, every_h: int, rng: Random) -> float | None:
    phase = rng.randint(0, every_h * 3600 - 1)
    t = phase
    while t <= fever.end_s:
        if t >= fever.start_s and oral_value(rng, week.core[t // 60]) >= FEVER_C:
            return (t - fever.start_s) / 60
        t += every_h * 3600
    return None


@dataclass
class ScenarioScore:
    name: str
    patient_days: float = 0.0
    delays: list[float] = field(default_factory=list)
    misses: int = 0
    unseen: int = 0  # missed fevers the patch never reported at fever level (out of range, off)
    sensor: list[float] = field(default_factory=list)  # the patch's estimate reaching 38.0
    sensor_misses: int = 0
    oral: dict[int, list[float]] = field(default_factory=lambda: {4: [], 8: []})
    oral_misses: dict[int, int] = field(default_factory=lambda: {4: 0, 8: 0})
    cleared_febrile: int = 0
    false_clinical: Counter[str] = field(default_factory=Counter)
    technical: Counter[str] = field(default_factory=Counter)
    silences: int = 0
    silences_missed: int = 0
    tachy_cases: int = 0
    tachy_detected: int = 0

    @property
    def fevers(self) -> int:
        return len(self.delays) + self.misses + self.unseen


def score(outcome: Outcome, s: ScenarioScore, rng: Random) -> None:
    week, events = outcome.week, outcome.events
    s.patient_days += week.days
    alerts = _alert_spans(events, FEVER_KINDS)
    for fever in week.fevers:
        d = _delay_min(alerts, fever)
        if d is None and _seen_by_patch(outcome, fever):
            s.misses += 1
        elif d is None:
            s.unseen += 1
        else:
            s.delays.append(d)
        sd = _sensor_delay_min(week, fever)
        if sd is None:
            s.sensor_misses += 1
        else:
            s.sensor.append(sd)
        for every in (4, 8):
            od = _oral_delay_min(week, fever, every, rng)
            if od is None:
                s.oral_misses[every] += 1
            else:
                s.oral[every].append(od)
    for e in events:
        if e.state is not AlertState.RAISED:
            if (e.state is AlertState.CLEARED and e.kind in FEVER_KINDS
                    and week.core[min(int(e.t_s // 60), len(week.core) - 1)] >= FEVER_C):
                s.cleared_febrile += 1
            continue
        if e.kind.is_technical:
            s.technical[e.kind.value] += 1
        elif e.kind in FEVER_KINDS and not any(f.contains(e.t_s, 3600, 3600)
                                               for f in week.fevers):
            s.false_clinical[e.kind.value] += 1
    # A tachycardia alert is true if it is open during sustained tachycardia (+10 min; any the
    # generator made, seen whole by the strap or not) or within an hour of a fever (the CRS
    # picture); detected: some alert open during a case the strap could see.
    for raised, cleared in _alert_spans(events, {AlertKind.TACHYCARDIA}):
        real = any(raised <= t.end_s + 600 and cleared >= t.start_s
                   for t in week.tachycardia_episodes)
        if not (real or any(f.contains(raised, 3600, 3600) for f in week.fevers)):
            s.false_clinical[AlertKind.TACHYCARDIA.value] += 1
    tachy_alerts = _alert_spans(events, {AlertKind.TACHYCARDIA})
    for t in week.tachycardias:
        s.tachy_cases += 1
        if any(raised <= t.end_s + 600 and cleared >= t.start_s for raised, cleared in tachy_alerts):
            s.tachy_detected += 1
    opened: dict[str, float] = {}
    patch_alarms: list[tuple[float, float]] = []  # (raised, cleared) of the patch's alarm
    for e in events:
        if not (e.kind.is_technical and e.device in (PATCH, None) and e.kind in PATCH_PROBLEMS):
            continue
        if e.state is AlertState.RAISED:
            opened[e.alert_id] = e.t_s
        elif e.state is AlertState.CLEARED and e.alert_id in opened:
            patch_alarms.append((opened.pop(e.alert_id), e.t_s))
    patch_alarms += [(t, float(WEEK_S)) for t in opened.values()]
    for silence in outcome.silences:
        s.silences += 1
        # An alarm raised or still open during the silence (or within 2 min of its end).
        if not any(r <= silence.end_s + 120 and c >= silence.start_s for r, c in patch_alarms):
            s.silences_missed += 1


# -- report ----------------------------------------------------------------------------------


def _dist(values: list[float], misses: int) -> str:
    if not values:
        return f"- / - / - ({misses} missed)"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (f"{statistics.median(ordered):.0f} / {p90:.0f} / {ordered[-1]:.0f} "
            f"({misses} missed)")


def _per_day(counter: Counter[str], days: float) -> str:
    if not counter:
        return "0"
    return ", ".join(f"{k} {v / days:.2f}" for k, v in sorted(counter.items()))


def table(scores: list[ScenarioScore]) -> str:
    head = ("| scenario | patient-days | fevers | hub delay min: median / p90 / max | patch "
            "estimate reaches 38.0 | oral every 4 h | oral every 8 h | cleared while febrile | "
            "false clinical / patient-day | technical / patient-day | silences missed | "
            "sustained tachycardia detected |")
    lines = [head, "|" + "---|" * 12]
    for s in scores:
        tachy = f"{s.tachy_detected}/{s.tachy_cases}" if s.tachy_cases else "-"
        lines.append(
            f"| {s.name} | {s.patient_days:.0f} | {s.fevers} | "
            f"{_dist(s.delays, s.misses)}{f', {s.unseen} unseen' if s.unseen else ''} | "
            f"{_dist(s.sensor, s.sensor_misses)} | {_dist(s.oral[4], s.oral_misses[4])} | {_dist(s.oral[8], s.oral_misses[8])} | "
            f"{s.cleared_febrile} | {_per_day(s.false_clinical, s.patient_days)} | "
            f"{_per_day(s.technical, s.patient_days)} | {s.silences_missed}/{s.silences} | "
            f"{tachy} |")
    return "\n".join(lines)


def goals(scores: list[ScenarioScore]) -> list[tuple[str, str, str, bool]]:
    days = sum(s.patient_days for s in scores)
    delays = [d for s in scores for d in s.delays]
    median = statistics.median(delays) if delays else float("inf")
    false_fever = sum(s.false_clinical[k.value] for s in scores for k in FEVER_KINDS) / days
    false_tachy = sum(s.false_clinical["tachycardia"] for s in scores) / days
    technical = sum(sum(s.technical.values()) for s in scores) / days
    cases = sum(s.tachy_cases for s in scores)
    detected = sum(s.tachy_detected for s in scores) / cases if cases else 1.0
    figures = {
        "fever episodes missed": (f"{sum(s.misses for s in scores)}",
                                  sum(s.misses for s in scores) == 0),
        "fever alerts cleared while febrile": (f"{sum(s.cleared_febrile for s in scores)}",
                                               sum(s.cleared_febrile for s in scores) == 0),
        "median fever detection delay": (f"{median:.1f} min", median <= 5),
        "false fever alerts / patient-day": (f"{false_fever:.3f}", false_fever <= 0.05),
        "false tachycardia alerts / patient-day": (f"{false_tachy:.3f}", false_tachy <= 0.2),
        "technical alarms / patient-day": (f"{technical:.2f}", technical <= 1.5),
        "silences without a technical alarm": (f"{sum(s.silences_missed for s in scores)}",
                                               sum(s.silences_missed for s in scores) == 0),
        "sustained tachycardia detected": (f"{100 * detected:.1f} %", detected >= 0.95),
    }
    return [(name, goal, *figures[name]) for name, goal in GOALS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench clinical", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the monitor logs every transition at WARNING
    started = time.perf_counter()
    profiles = load_profiles(config(0.5).device_profiles_dir)
    scores = []
    n = 0
    for scenario in SCENARIOS:
        sc = ScenarioScore(scenario)
        for i in range(PATIENTS[scenario]):
            seed = args.seed * 1000 + n
            n += 1
            week = generate(f"{scenario}-{i}", scenario, seed)
            score(run_week(week, profiles, seed), sc, Random(seed + 1))
        scores.append(sc)
    took = time.perf_counter() - started
    lines = [f"Clinical benchmark: {n} synthetic patient-weeks through daemon.monitor.Monitor "
             f"(seed {args.seed}, {took:.0f} s on one core)", "", table(scores), "",
             "| goal | target | measured | |", "|---|---|---|---|"]
    results = goals(scores)
    for name, goal, measured, ok in results:
        lines.append(f"| {name} | {goal} | {measured} | {'PASS' if ok else 'FAIL'} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
