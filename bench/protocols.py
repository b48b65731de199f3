"""Clinical rows for issue 13: the baseline notice and the emergency tier on synthetic patients.

    python -m bench.protocols [--quick] [--table]

Everything runs through the real engines (``daemon.rules.ClinicalRules`` with default thresholds,
``daemon.temperature_baseline``, ``daemon.emergency_rules``); oximeter and cuff values go through
the real encoder and decoder, so PLX motion flags are judged exactly as on a device. The patients
are synthetic (seeded, deterministic); the figures measure the rules against this model, not
against patients, and change with it. What the model has:

* temperature (patch, once a minute, core-equivalent): per-patient mean 36.3-37.1 °C, circadian
  amplitude 0.2-0.45 °C peaking 15-19 h, sensor noise 0.04-0.10 °C, day-to-day drift, and the
  false-notice sources of clinical.md §3: warm-blanket nights (+0.3-0.6 °C for 30-90 min, on a
  third of nights) and afternoon exertion bumps (+0.2-0.4 °C for 20-40 min, every other day);
  the patch is off for an hour a day (no readings). 70 % of patients have a CRS fever on day
  3-6: a prodrome rising from baseline to 38.0 °C over 1.5-6 h, then to a 38.5-39.5 °C peak.
* oximeter nights (1 Hz for 6 h): SpO2 95-98 % with noise, motion episodes (flagged erratic
  signal, values 8-15 % low, 10-120 s, ~12 a night), unflagged brief dips below 90 % (5-40 s, a
  few a night); half the nights have a true desaturation (86-89 % for 5-20 min).
* cuff (4 readings a day for 7 days): baseline 100-140 mmHg, noise 4 mmHg; 40 % of patients have
  hypotension on day 3-6 (two readings 72-88 mmHg, >= 12 below baseline); "low-normal" patients
  (baseline 95-99) read 3-7 mmHg below it now and then (< 90 mmHg but < 10 below the true
  baseline): not an emergency by Crombie's rule, though a learned baseline may be off by a few.

Rows: median lead of the ``temperature_trend`` notice over the 38.0 °C fever alert on CRS onsets
(goal >= 1.5 h; no notice before the fever counts as a lead of 0), false notices per afebrile
patient-day (goal <= 0.2), hypoxia and hypotension sensitivity (goal 100 %) with detection delay,
and false emergencies (goal 0). The floor is the fixed 38.0 °C rule, whose lead is 0 by
definition, so these rows have no ratio.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import emit_rows
from bench.report import Row, table
from daemon.alerts import AlertKind, AlertState
from daemon.decoding import NoReading, decode, to_readings
from daemon.emergency_rules import EmergencyRules, EmergencyThresholds
from daemon.encoding import encode_blood_pressure, encode_plx_continuous
from daemon.readings import Reading, Vital
from daemon.rules import ClinicalRules
from daemon.temperature_baseline import TemperatureBaseline, TemperatureTrendThresholds
from daemon.thresholds import Thresholds

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
DAY = 86400
LEAD_GOAL_H = 1.5
FALSE_NOTICE_GOAL = 0.2
# A notice counts towards an onset when raised from this long before the prodrome starts.
CREDIT_BEFORE_ONSET_S = 3600


def _ids() -> Iterator[str]:
    return (f"b{i}" for i in itertools.count())


# --------------------------------------------------------------------------- temperature


@dataclass(frozen=True)
class TempPatient:
    seed: int
    mean: float
    amplitude: float
    peak_h: float
    noise: float
    onset_s: float | None  # prodrome start
    prodrome_s: float
    peak_c: float

    def core(self, t: float, rng: random.Random, events: dict[str, list[tuple[float, float, float]]]
             ) -> float:
        hours = (t % DAY) / 3600
        value = self.mean + self.amplitude * math.cos(2 * math.pi * (hours - self.peak_h) / 24)
        value += 0.08 * math.sin(2 * math.pi * t / (3.7 * DAY) + self.seed)  # day-to-day drift
        for start, end, bump in events["artefacts"]:
            if start <= t < end:
                value += bump
        if self.onset_s is not None and t >= self.onset_s:
            base = value
            into = t - self.onset_s
            to_fever = max(0.0, 38.0 - base)
            if into < self.prodrome_s:
                value = base + to_fever * into / self.prodrome_s
            else:
                value = min(self.peak_c, 38.0 + (self.peak_c - 38.0) * (into - self.prodrome_s)
                            / 3600)
        return value + rng.gauss(0, self.noise)


def _temp_patient(seed: int, days: int) -> tuple[TempPatient, dict[str, list[tuple[float, float,
                                                                                 float]]]]:
    rng = random.Random(seed)
    crs = rng.random() < 0.7
    onset = (rng.randint(3, 6) - 1) * DAY + rng.uniform(0, DAY) if crs else None
    if onset is not None and onset > days * DAY - 12 * 3600:
        onset = days * DAY - 12 * 3600
    patient = TempPatient(
        seed=seed, mean=rng.uniform(36.3, 37.1), amplitude=rng.uniform(0.2, 0.45),
        peak_h=rng.uniform(15, 19), noise=rng.uniform(0.04, 0.10), onset_s=onset,
        prodrome_s=rng.uniform(1.5, 6) * 3600, peak_c=rng.uniform(38.5, 39.5),
    )
    artefacts: list[tuple[float, float, float]] = []
    offs: list[tuple[float, float, float]] = []
    for day in range(days):
        if rng.random() < 1 / 3:  # a warm blanket at night
            start = day * DAY + rng.uniform(0, 5) * 3600
            artefacts.append((start, start + rng.uniform(30, 90) * 60, rng.uniform(0.3, 0.6)))
        if rng.random() < 0.5:  # exertion in the afternoon
            start = day * DAY + rng.uniform(13, 18) * 3600
            artefacts.append((start, start + rng.uniform(20, 40) * 60, rng.uniform(0.2, 0.4)))
        off = day * DAY + rng.uniform(7, 21) * 3600  # an hour with the patch off (a shower)
        offs.append((off, off + 3600, 0.0))
    return patient, {"artefacts": artefacts, "off": offs}


def run_temperature(patients: int, days: int, seed_base: int = 1000) -> dict[str, Any]:
    leads_h: list[float] = []
    false_notices = 0
    afebrile_days = 0.0
    missed = 0
    for seed in range(patients):
        patient, events = _temp_patient(seed_base + seed, days)
        rng = random.Random(seed)
        fever = ClinicalRules(Thresholds(), new_id=_ids().__next__)
        fever.expect("patch", interval_s=60.0)  # as the monitor declares the patch profile
        trend = TemperatureBaseline(TemperatureTrendThresholds(), new_id=_ids().__next__)
        end = days * DAY
        fever_at: float | None = None
        notices: list[float] = []
        for t in range(0, end, 60):
            if any(a <= t < b for a, b, _ in events["off"]):
                continue
            value = round(patient.core(t, rng, events), 2)
            reading = Reading("patch", Vital.TEMPERATURE, value, T0 + timedelta(seconds=t))
            fever_out = fever.observe(reading)
            trend.note_fever(fever_out)
            for tr in trend.observe(reading):
                if tr.state is AlertState.RAISED:
                    notices.append(t)
            if fever_at is None and any(tr.state is AlertState.RAISED for tr in fever_out):
                fever_at = t
            if fever_at is not None and t > fever_at + 6 * 3600:
                break  # the episode is the care team's now; the rest is not afebrile time
        afebrile_end = (patient.onset_s if patient.onset_s is not None else end)
        afebrile_days += afebrile_end / DAY
        if patient.onset_s is not None:
            credited = [n for n in notices if patient.onset_s - CREDIT_BEFORE_ONSET_S <= n
                        and (fever_at is None or n <= fever_at)]
            if fever_at is None:
                missed += 1  # the fever rule never fired: no lead to measure
            else:
                leads_h.append((fever_at - credited[0]) / 3600 if credited else 0.0)
            false_notices += sum(1 for n in notices if n < patient.onset_s - CREDIT_BEFORE_ONSET_S)
        else:
            false_notices += len(notices)
    return {
        "patients": patients,
        "days": days,
        "onsets": len(leads_h),
        "leads_h": [round(x, 2) for x in leads_h],
        "false_notices": false_notices,
        "afebrile_patient_days": round(afebrile_days, 1),
        "fever_rule_missed": missed,
    }


# --------------------------------------------------------------------------- oximeter nights


def run_hypoxia(nights: int) -> dict[str, Any]:
    detected_delays: list[float] = []
    episodes = 0
    false_emergencies = 0
    voided = 0
    for night in range(nights):
        rng = random.Random(5000 + night)
        length = 6 * 3600
        motion = []
        for _ in range(12):
            start = rng.uniform(0, length)
            motion.append((start, start + rng.uniform(10, 120), rng.uniform(8, 15)))
        dips = []
        for _ in range(rng.randint(1, 4)):
            start = rng.uniform(0, length)
            dips.append((start, start + rng.uniform(5, 40), rng.uniform(85, 89)))
        true_episode = None
        if night % 2 == 0:
            start = rng.uniform(3600, length - 3600)
            true_episode = (start, start + rng.uniform(5, 20) * 60, rng.uniform(86, 89))
            episodes += 1
        base = rng.uniform(95, 98)
        rules = EmergencyRules(EmergencyThresholds(), new_id=_ids().__next__)
        raised: list[float] = []
        for t in range(length):
            value = base + rng.gauss(0, 0.7)
            status = 0
            for a, b, low in dips:
                if a <= t < b:
                    value = low + rng.gauss(0, 0.5)
            if true_episode and true_episode[0] <= t < true_episode[1]:
                value = true_episode[2] + rng.gauss(0, 0.6)
            for a, b, drop in motion:
                if a <= t < b:
                    value -= drop
                    status = 1 << 6  # erratic signal: how the oximeter reports motion
            percent = max(50, min(100, round(value)))
            result = decode("plx_continuous",
                            encode_plx_continuous(percent, 70, device_sensor_status=status))
            if isinstance(result, NoReading):
                voided += 1
                continue
            for reading in to_readings(result, "oximeter", T0 + timedelta(seconds=t)):
                for tr in rules.observe(reading):
                    if tr.state is AlertState.RAISED:
                        raised.append(t)
        if true_episode is None:
            false_emergencies += len(raised)
            continue
        start, end, _ = true_episode
        hits = [r for r in raised if start <= r <= end + 60]
        false_emergencies += len(raised) - len(hits)
        if hits:
            detected_delays.append(hits[0] - start)
    return {
        "nights": nights,
        "episodes": episodes,
        "detected": len(detected_delays),
        "delays_s": detected_delays,
        "false_emergencies": false_emergencies,
        "voided_payloads": voided,
    }


# --------------------------------------------------------------------------- cuff


def run_hypotension(patients: int, days: int, *, configured: bool = False) -> dict[str, Any]:
    """``configured``: the care team put the patient's usual SBP in the config (the true one);
    else the baseline is learned from the first readings."""
    episodes = detected = false_emergencies = false_learning = 0
    for seed in range(patients):
        rng = random.Random(9000 + seed)
        low_normal = seed % 5 == 4
        baseline = rng.uniform(95, 99) if low_normal else rng.uniform(100, 140)
        episode_day = rng.randint(3, 6) if (not low_normal and rng.random() < 0.4) else None
        thresholds = EmergencyThresholds(sbp_baseline_mmhg=baseline if configured else None)
        rules = EmergencyRules(thresholds, new_id=_ids().__next__)
        hit = False
        if episode_day is not None:
            episodes += 1
        for day in range(days):
            for k, hour in enumerate((7, 12, 17, 22)):
                t = day * DAY + hour * 3600
                sbp = baseline + rng.gauss(0, 4)
                if low_normal and day >= 1 and rng.random() < 0.3:
                    sbp = baseline - rng.uniform(3, 7)  # < 90, but < 10 below the usual
                in_episode = episode_day is not None and day == episode_day and k in (1, 2)
                if in_episode:
                    sbp = min(rng.uniform(72, 88), baseline - 12)
                learning = rules.sbp_baseline().mmhg is None
                data = encode_blood_pressure(round(sbp), round(sbp * 0.62), None)
                result = decode("blood_pressure_measurement", data)
                assert not isinstance(result, NoReading)
                for reading in to_readings(result, "cuff", T0 + timedelta(seconds=t)):
                    for tr in rules.observe(reading):
                        if tr.state is not AlertState.RAISED:
                            continue
                        if in_episode and tr.kind is AlertKind.HYPOTENSION:
                            hit = True
                        else:
                            false_emergencies += 1
                            false_learning += learning
        detected += hit
    return {"patients": patients, "days": days, "episodes": episodes, "detected": detected,
            "false_emergencies": false_emergencies,
            "false_while_learning_baseline": false_learning}


# --------------------------------------------------------------------------- rows


def rows(temp: dict[str, Any], hyp: dict[str, Any], bp: dict[str, Any],
         bp_configured: dict[str, Any]) -> list[Row]:
    leads = temp["leads_h"]
    median_lead = statistics.median(leads) if leads else math.nan
    per_day = temp["false_notices"] / max(temp["afebrile_patient_days"], 1e-9)
    floor_label = "the 38.0 °C rule alone (lead 0 by definition)"
    sens_hyp = 100.0 * hyp["detected"] / max(hyp["episodes"], 1)
    sens_bp = 100.0 * bp["detected"] / max(bp["episodes"], 1)
    delay = statistics.median(hyp["delays_s"]) if hyp["delays_s"] else math.nan
    return [
        Row(key="trend_lead_h", name=f"Baseline notice: median lead over 38.0 °C "
            f"({temp['onsets']} CRS onsets)", unit="h", figure=round(median_lead, 2),
            floor=None, goal=f">= {LEAD_GOAL_H:g} h", passed=median_lead >= LEAD_GOAL_H,
            floor_label=floor_label,
            note=f"onsets without a notice before the fever: "
                 f"{sum(1 for x in leads if x == 0)}", detail=temp),
        Row(key="trend_false_per_day", name="Baseline notice: false notices per patient-day",
            unit="/day", figure=round(per_day, 3), floor=None,
            goal=f"<= {FALSE_NOTICE_GOAL:g}", passed=per_day <= FALSE_NOTICE_GOAL,
            note=f"{temp['false_notices']} over {temp['afebrile_patient_days']} afebrile "
                 "patient-days (warm-blanket nights and exertion included)", detail={}),
        Row(key="hypoxia_sensitivity", name=f"Emergency: hypoxia detected "
            f"({hyp['episodes']} desaturations)", unit="%", figure=round(sens_hyp, 1),
            floor=None, goal="100 %", passed=hyp["detected"] == hyp["episodes"],
            note=f"median delay from the first value < 90 %: {delay:.0f} s; "
                 f"{hyp['voided_payloads']} motion-flagged payloads voided", detail=hyp),
        Row(key="hypotension_sensitivity", name=f"Emergency: hypotension detected "
            f"({bp['episodes']} episodes)", unit="%", figure=round(sens_bp, 1), floor=None,
            goal="100 %", passed=bp["detected"] == bp["episodes"],
            note="at the first qualifying cuff reading", detail=bp),
        Row(key="hypoxia_false", name=f"Emergency: false hypoxia alerts ({hyp['nights']} "
            "oximeter nights)", unit="alerts", figure=float(hyp["false_emergencies"]),
            floor=None, goal="0", passed=hyp["false_emergencies"] == 0,
            note="motion-flagged dips (8-15 % low, 10-120 s) and unflagged dips < 60 s",
            detail={}),
        Row(key="hypotension_false_learned", name="Emergency: false hypotension alerts, "
            f"baseline learned ({bp['patients']} cuff patient-weeks)", unit="alerts",
            figure=float(bp["false_emergencies"]), floor=None, goal="reported", passed=None,
            note=f"{bp['false_while_learning_baseline']} before a baseline was learned (SBP < 90 "
                 "alone), the rest where a 3-7 mmHg drop met a learned baseline a few mmHg high: "
                 "set sbp_baseline_mmhg for low-normal patients", detail={}),
        Row(key="hypotension_false_configured", name="Emergency: false hypotension alerts, "
            f"baseline configured ({bp_configured['patients']} cuff patient-weeks)",
            unit="alerts", figure=float(bp_configured["false_emergencies"]), floor=None,
            goal="reported", passed=None,
            note="single readings whose 4 mmHg cuff noise put them >= 10 below and < 90 "
                 "(sbp_confirm_readings = 2 trades these for a reading's delay); sensitivity "
                 f"{bp_configured['detected']}/{bp_configured['episodes']}",
            detail=bp_configured),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.protocols")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true", help="print a table, not JSON")
    args = parser.parse_args(argv)
    if args.quick:
        patients, nights, cuffs = 24, 4, 20  # fewer onsets than 20 make the median noisy
    else:
        patients, nights, cuffs = 60, 16, 100
    produced = rows(run_temperature(patients, 7), run_hypoxia(nights),
                    run_hypotension(cuffs, 7), run_hypotension(cuffs, 7, configured=True))
    if args.table:
        print(table(produced))
    else:
        emit_rows(produced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
