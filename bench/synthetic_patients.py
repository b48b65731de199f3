"""Synthetic patient weeks for the clinical benchmark (bench/clinical.py): seeded, deterministic.

Each patient-week is one outpatient after CAR-T or a bispecific at home for seven days with an
axillary temperature patch (once a minute), a chest strap worn during the day (part-time) and an
oral thermometer. Everything is generated on a one-minute grid (core temperature, the patch's
view of it, the heart rate without noise) plus lists of events (strap on/off, Bluetooth drops,
outings, showers, patch displacements, oral readings); bench/clinical.py turns these into
monitor inputs. Ground truth (fever episodes, sustained tachycardia, silences) comes with it.

Parameters and where they come from (**[C]** a source in ../shared/reference/clinical.md or
cited here; **[U]** an assumption of ours, to be replaced by measured data):

| What | Value | Source |
|---|---|---|
| Core (oral-equivalent) mesor | N(36.7, 0.15) °C per patient | mean 36.7 °C over 93,225 readings, Chronobiol Int 2019;36:1646 **[C]**; spread **[U]** |
| Circadian amplitude, peak | U(0.2, 0.4) °C, peak U(17, 20) h, nadir 12 h earlier | same study: minimum 6-8 h, maximum 18-20 h **[C]**; amplitude "more than half a degree" peak to trough (Enzyklopädie der Schlafmedizin) **[C]** |
| Core noise | AR(1), SD 0.05 °C, 30 min memory | **[U]** |
| Patch-to-core gap (axilla below core) | N(0.45, 0.25) °C per patient, within 0-1.2 | TempTraq vs tympanic bias +0.45 °C, LoA -0.57..+1.46 (Choi & Ahn 2022, clinical.md §2.2) **[C]**; per-patient share **[U]** |
| Configured site offset | the patient's gap + N(0, 0.15) °C | calibrated against an oral reading at enrolment, as the profile asks **[U]** |
| Patch lag behind core | first order, tau U(2, 6) min | **[U]** |
| Patch noise | N(0, 0.05) °C a reading | **[U]** |
| Patch displacement | 0.25 a day; falls U(1.5, 5) °C in U(1, 5) min; lasts U(20, 180) min or until 10-40 min after the hub's alarm | false readings from a low-placed patch (Massengale, TCT 2024; clinical.md §3) **[C]**; rates **[U]** |
| Shower | once a day, 07-10 h or 19-22 h, 8-15 min: patch falls U(1, 3) °C, recovers with tau 10 min | **[U]** |
| Heavy blanket | 60 % of nights, 23-06:30 h: patch +U(0.2, 0.6) °C (never above core + 0.1) | false readings from heavy blankets (Massengale, TCT 2024) **[C]**; size **[U]** |
| Bluetooth drops | 3 a day, 10-120 s | **[U]** |
| Outings (both wearables out of range) | 0.3 a day, 1-3 h, 09-19 h | **[U]** |
| Strap worn | part-time: 07:30-08:30 on, 20:30-22:00 off (45 s without contact, then disconnected) | part-time wear (issue 10); wear gaps (Rajeeve, ASH 2023: 2 of 28 < 50 % wear, clinical.md §3) **[C]** |
| Resting heart rate | N(72, 8) bpm per patient, +-4 bpm circadian, noise SD 3 bpm | **[U]** |
| Walks | 1-3 a day, 09-19 h, lognormal median 20 min (sigma 0.45, 8-60 min), +U(20, 45) bpm, noise SD 5 | **[U]** |
| Fever and heart rate | +8 bpm per °C above 37.0 | +7.2 bpm/°C in 4,493 medical admissions (Jensen, Acute Med 2019); 7.2 (men) / 9.5 (women) in ICU patients **[C]** |
| CRS onset | day 1.5-5.5; rises U(0.3, 1.5) °C/h to U(38.3, 40.0) °C; plateau U(2, 10) h (wobble +-0.15); falls U(0.3, 1.0) °C/h | onset timing clinical.md §2.3 **[C]**; fall at most 1.6 °C/h (clinical.md §8) **[C]**; shapes **[U]** |
| Low-grade fever | 1-2 episodes of U(6, 18) h: 38.0 + 0.25 sin(2 pi t / U(1, 3) h) | **[U]** |
| Short spikes | 2-3 a week: U(38.3, 38.9) °C, rise 20-40 min, hold 0-15 min, fall U(0.8, 1.5) °C/h | **[U]** |
| Sinus tachycardia without fever | 3 a week while the strap is worn: U(108, 125) bpm for U(40, 150) min, 5 min ramps | the benchmark's case "sustained >= 105 bpm for 30 min" (issue 10) |
| Oral readings | 07:30-09:00 and 20:00-22:00 daily; 60 % of fevers 20-120 min after onset (feeling unwell); 80 % of the hub's requests within 5-30 min | twice daily manual temperatures (BioSticker protocol NCT05662631, clinical.md §6) **[C]**; behaviour **[U]** |
| Oral reading error | N(0, 0.1) °C | **[U]** (oral is the reference site of the 38.0 °C threshold) |
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DAY_MIN = 1440
WEEK_MIN = 7 * DAY_MIN
WEEK_S = WEEK_MIN * 60
FEVER_C = 38.0
MERGE_GAP_MIN = 60  # core dips below 38.0 shorter than this are one fever episode

SCENARIOS = ("quiet", "crs_onset", "low_grade", "short_spikes", "sinus_tachycardia")


@dataclass(frozen=True)
class Span:
    start_s: int
    end_s: int

    def contains(self, t_s: float, before_s: float = 0, after_s: float = 0) -> bool:
        return self.start_s - before_s <= t_s <= self.end_s + after_s


@dataclass
class Displacement:
    start_min: int
    ramp_min: int
    depth_c: float
    natural_end_min: int


@dataclass
class PatientWeek:
    pid: str
    scenario: str
    offset_c: float  # the patch's configured site offset
    core: list[float]  # oral-equivalent core temperature, one a minute
    patch_skin: list[float]  # what the patch would read on the skin (before artifacts)
    blanket: list[float]  # added to the patch reading (°C)
    shower: list[float]  # subtracted from the patch reading (°C)
    hr: list[float]  # heart rate without noise, one a minute
    walking: list[bool]
    strap_on: list[Span]  # worn (put on at start, taken off at end)
    outings: list[Span]  # both wearables out of range
    ble_drops: list[Span]  # the patch only
    displacements: list[Displacement]
    oral_checks: list[int]  # seconds: routine and symptom-prompted oral readings
    fevers: list[Span] = field(default_factory=list)
    tachycardias: list[Span] = field(default_factory=list)  # sustained, without fever, seen
    # Every sustained tachycardia generated, including those the strap could not see whole (an
    # outing, the strap off) or near a fever: an alert during one is not false.
    tachycardia_episodes: list[Span] = field(default_factory=list)
    days: float = 7.0


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _circadian(rng: random.Random) -> tuple[float, float, float]:
    return rng.gauss(36.7, 0.15), rng.uniform(0.2, 0.4), rng.uniform(17.0, 20.0)


def _fever_bump(scenario: str, rng: random.Random, base: list[float]) -> list[float]:
    """The febrile part of the core temperature, added to the circadian baseline."""
    bump = [0.0] * WEEK_MIN
    if scenario == "crs_onset":
        onset = int(rng.uniform(1.5, 5.5) * DAY_MIN)
        rise, peak = rng.uniform(0.3, 1.5), rng.uniform(38.3, 40.0)
        plateau = int(rng.uniform(2, 10) * 60)
        fall = rng.uniform(0.3, 1.0)
        height = peak - base[onset]
        up = int(height / rise * 60)
        down = int(height / fall * 60)
        wobble_period = rng.uniform(60, 180)
        for i in range(up + plateau + down):
            m = onset + i
            if m >= WEEK_MIN:
                break
            if i < up:
                b = height * i / up
            elif i < up + plateau:
                b = height + 0.15 * math.sin(2 * math.pi * (i - up) / wobble_period)
            else:
                b = height * (1 - (i - up - plateau) / down)
            bump[m] = b
    elif scenario == "low_grade":
        for _ in range(rng.randint(1, 2)):
            start = int(rng.uniform(0.5, 6.0) * DAY_MIN)
            length = int(rng.uniform(6, 18) * 60)
            period = rng.uniform(60, 180)
            for i in range(length):
                m = start + i
                if m >= WEEK_MIN:
                    break
                ramp = min(1.0, i / 60, (length - i) / 60)
                target = FEVER_C + 0.25 * math.sin(2 * math.pi * i / period)
                bump[m] = max(bump[m], ramp * (target - base[m]))
    elif scenario == "short_spikes":
        for _ in range(rng.randint(2, 3)):
            start = int(rng.uniform(0.5, 6.5) * DAY_MIN)
            peak = rng.uniform(38.3, 38.9)
            up, hold = rng.randint(20, 40), rng.randint(0, 15)
            height = peak - base[start]
            down = int(height / rng.uniform(0.8, 1.5) * 60)
            for i in range(up + hold + down):
                m = start + i
                if m >= WEEK_MIN:
                    break
                if i < up:
                    b = height * i / up
                elif i < up + hold:
                    b = height
                else:
                    b = height * (1 - (i - up - hold) / down)
                bump[m] = max(bump[m], b)
    return bump


def _spans_where(flags: list[bool], merge_gap: int = 0) -> list[Span]:
    spans: list[list[int]] = []
    start = None
    for m, f in enumerate([*flags, False]):
        if f and start is None:
            start = m
        elif not f and start is not None:
            if spans and start - spans[-1][1] <= merge_gap:
                spans[-1][1] = m
            else:
                spans.append([start, m])
            start = None
    return [Span(a * 60, b * 60) for a, b in spans]


def generate(pid: str, scenario: str, seed: int) -> PatientWeek:
    rng = random.Random(seed)
    mesor, amplitude, peak_h = _circadian(rng)
    base = []
    noise = 0.0
    for m in range(WEEK_MIN):
        noise = noise * math.exp(-1 / 30) + rng.gauss(0, 0.05 * math.sqrt(1 - math.exp(-2 / 30)))
        hour = (m % DAY_MIN) / 60
        base.append(mesor + amplitude * math.cos(2 * math.pi * (hour - peak_h) / 24) + noise)
    bump = _fever_bump(scenario, rng, base)
    core = [b + f for b, f in zip(base, bump, strict=True)]

    gap = _clip(rng.gauss(0.45, 0.25), 0.0, 1.2)
    offset = round(gap + rng.gauss(0, 0.15), 2)
    tau = rng.uniform(2, 6)
    k = 1 - math.exp(-1 / tau)
    skin, lagged = [], core[0]
    for c in core:
        lagged += (c - lagged) * k
        skin.append(lagged - gap)

    blanket = [0.0] * WEEK_MIN
    for day in range(7):
        if rng.random() < 0.6:
            size = rng.uniform(0.2, 0.6)
            for m in range(day * DAY_MIN - 60, day * DAY_MIN + 390):
                if 0 <= m < WEEK_MIN:
                    blanket[m] = min(size, core[m] + 0.1 - skin[m])
    shower = [0.0] * WEEK_MIN
    for day in range(7):
        start = day * DAY_MIN + int(rng.choice((rng.uniform(7, 10), rng.uniform(19, 22))) * 60)
        length, depth = rng.randint(8, 15), rng.uniform(1.0, 3.0)
        for i in range(length + 60):
            m = start + i
            if m < WEEK_MIN:
                shower[m] = depth * min(1.0, i / 2) if i < length else depth * math.exp(
                    -(i - length) / 10)

    # Heart rate: rest + circadian + fever + walks + sinus tachycardia.
    rest = rng.gauss(72, 8)
    hr = [rest + 4 * math.cos(2 * math.pi * ((m % DAY_MIN) / 60 - 16) / 24)
          + 8 * max(0.0, core[m] - 37.0) for m in range(WEEK_MIN)]
    walking = [False] * WEEK_MIN
    for day in range(7):
        for _ in range(rng.randint(1, 3)):
            start = day * DAY_MIN + int(rng.uniform(9, 19) * 60)
            length = int(_clip(rng.lognormvariate(math.log(20), 0.45), 8, 60))
            extra = rng.uniform(20, 45)
            for i in range(length):
                m = start + i
                if m < WEEK_MIN:
                    ramp = min(1.0, i / 2, (length - i) / 2)
                    hr[m] += extra * ramp
                    walking[m] = True
    tachy: list[Span] = []
    if scenario == "sinus_tachycardia":
        for day in rng.sample(range(7), 3):
            start = day * DAY_MIN + int(rng.uniform(10, 17) * 60)
            length, target = rng.randint(40, 150), rng.uniform(108, 125)
            for i in range(length):
                m = start + i
                ramp = min(1.0, i / 5, (length - i) / 5)
                hr[m] = max(hr[m], hr[m] + (target - hr[m]) * ramp)
            tachy.append(Span((start + 5) * 60, (start + length - 5) * 60))

    strap_on = [Span((d * DAY_MIN + int(rng.uniform(7.5, 8.5) * 60)) * 60,
                     (d * DAY_MIN + int(rng.uniform(20.5, 22.0) * 60)) * 60) for d in range(7)]
    outings = []
    for day in range(7):
        if rng.random() < 0.3:
            start = (day * DAY_MIN + int(rng.uniform(9, 16) * 60)) * 60
            outings.append(Span(start, start + int(rng.uniform(1, 3) * 3600)))
    drops = []
    for day in range(7):
        for _ in range(3):
            start = day * 86400 + rng.randint(0, 86399)
            drops.append(Span(start, start + rng.randint(10, 120)))
    displacements = []
    for day in range(7):
        if rng.random() < 0.25:
            start = day * DAY_MIN + rng.randint(0, DAY_MIN - 1)
            displacements.append(Displacement(start, rng.randint(1, 5), rng.uniform(1.5, 5.0),
                                              start + rng.randint(20, 180)))

    fevers = _spans_where([c >= FEVER_C for c in core], MERGE_GAP_MIN)
    oral = []
    for day in range(7):
        oral.append((day * DAY_MIN + int(rng.uniform(7.5, 9.0) * 60)) * 60)
        oral.append((day * DAY_MIN + int(rng.uniform(20.0, 22.0) * 60)) * 60)
    for f in fevers:
        if rng.random() < 0.6:
            oral.append(f.start_s + rng.randint(20, 120) * 60)
    oral = sorted(t for t in oral if t < WEEK_S)
    # A case of sustained tachycardia without fever is one the strap can see: worn, at home
    # (not on an outing, out of the hub's range) and no fever within an hour.
    episodes = list(tachy)
    tachy = [t for t in tachy if any(s.contains(t.start_s) and s.contains(t.end_s)
                                     for s in strap_on)
             and not any(o.start_s - 1800 <= t.end_s and o.end_s >= t.start_s for o in outings)
             and not any(f.contains(t.start_s, 3600, 3600) for f in fevers)]
    return PatientWeek(pid, scenario, offset, core, skin, blanket, shower, hr, walking, strap_on,
                       outings, sorted(drops, key=lambda s: s.start_s), displacements, oral,
                       fevers, tachy, episodes)


def oral_value(rng: random.Random, core_c: float) -> float:
    return round(core_c + rng.gauss(0, 0.1), 1)
