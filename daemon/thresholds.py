"""Alarm thresholds. Every number is set by the care team; the defaults and their sources are
in ../shared/reference/clinical.md (ASTCT 2019, drug labels, Crombie et al. Blood 2024).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from daemon.emergency_rules import EmergencyThresholds
from daemon.temperature_baseline import TemperatureTrendThresholds

# NEWS2 (clinical.md §4) scores temperature 36.1-38.0 °C and pulse 51-90 bpm as 0 (normal).
NEWS2_NORMAL_TEMPERATURE_LOW_C = 36.1
NEWS2_NORMAL_PULSE_LOW_BPM = 51.0


class _Strict(BaseModel):
    # inf/nan are valid TOML floats; an infinite window or limit passes "> 0" and then fails
    # (timedelta overflow) or never fires at run time.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeverThresholds(_Strict):
    # ASTCT 2019 grade-1 CRS and every CAR-T/bispecific label: >= 38.0 °C (100.4 °F).
    # Bounds (clinical.md): below 37.0 °C is normal body temperature (NEWS2 scores 36.1-38.0
    # as 0), so the rule would alarm on a well patient; above 39.0 °C every fever NEWS2 does
    # not yet score as 2 (>= 39.1) would go unseen, though ASTCT, the labels and IDSA (a single
    # oral >= 38.3 °C) all call it a fever.
    threshold_c: float = Field(38.0, ge=37.0, le=39.0)
    # A second, higher tier; NEWS2 scores >= 39.1 °C as 2 and Hay et al. use ~38.9 °C. Must
    # be above threshold_c; at most 41.0 °C (hyperpyrexia in general clinical usage, an
    # emergency in itself; not in clinical.md), beyond which the tier would never be reached.
    high_threshold_c: float = Field(39.0, gt=37.0, le=41.0)
    # Confirmation: the low median of readings in the window must be at or above the
    # threshold, over at least min_samples readings spanning at least min_span_s, so that
    # one artifact sample (a hot blanket, a loose patch) never alarms.
    # The window is the longer of confirm_window_s and confirm_window_intervals device sample
    # intervals (issue 10: a bound derived from the profile): 150 s, three readings, for the
    # once-a-minute patch, so two of three at or above the threshold confirm.
    confirm_window_s: float = Field(120.0, gt=0)
    confirm_min_samples: int = Field(2, ge=1)
    confirm_min_span_s: float = Field(60.0, ge=0)
    # Hysteresis: clears once the window median stays below threshold - margin for clear_hold_s.
    # ISO 80601-2-56 allows ±0.3 °C laboratory error, so the margin is at least that.
    clear_margin_c: float = Field(0.3, ge=0)
    clear_hold_s: float = Field(900.0, gt=0)
    # A continuous wearable reporting less often than the window still confirms: the window is
    # at least this many of the device's expected sample intervals (2.5 holds three readings,
    # so two consecutive readings at or above the threshold confirm).
    confirm_window_intervals: float = Field(2.5, ge=1.0)
    # No silent clear (clinical.md §8): the fastest documented defervescence is about 1.6 °C in
    # an hour (children after acetaminophen, Clin Pediatr 1993, PMID 8344044); critically ill
    # adults cool about 0.2 °C/h. A wearable's temperature falling from the fever clear band or
    # above by more than fall_allowance_c + fall_max_c_per_h x the time since (judged against
    # the highest readings of the last fall_horizon_s) is a sensor leaving the skin, a wet site
    # or a wrong reading: never a clear, and a technical alarm asking for an oral reading. At
    # 15 min that is 1.4 °C, the bound the reference sheet infers (about 1.5 °C within 15 min);
    # the allowance covers noise, posture and a blanket taken off.
    fall_max_c_per_h: float = Field(1.6, gt=0)
    fall_allowance_c: float = Field(1.0, ge=0)
    fall_horizon_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FeverThresholds:
        if self.high_threshold_c <= self.threshold_c:
            raise ValueError("high_threshold_c must be above threshold_c")
        return self


class TachycardiaThresholds(_Strict):
    # No CRS-specific number exists (clinical.md §2.1); >100 bpm is the clinical convention.
    # Bounds from NEWS2's pulse bands (clinical.md §4): below 90 the rule would alarm on a
    # pulse NEWS2 scores 0 (51-90, normal); above 130 it would stay silent at >= 131, which
    # NEWS2 scores 3 (an urgent response on its own).
    threshold_bpm: float = Field(100.0, ge=90, le=130)
    # Confirmed when at least min_fraction of the readings (with sensor contact) over the window
    # are above the threshold, its first and last minute mostly so: a few dips to 100 bpm do not
    # reset it (a median would be 0.5), yet the rate must be high from start to end.
    # window_s applies while a fever alert is open (fever with a fast heart rate is the CRS
    # picture and must escalate fast), unless only an oral reading older than the wearables'
    # clear_hold_s below the band still holds it open (rules.ClinicalRules._fever_current);
    # alone, a fast heart rate must last window_alone_s, longer than an ordinary walk (30 min:
    # the sustained-tachycardia case of the clinical benchmark).
    window_s: float = Field(600.0, gt=0)
    window_alone_s: float = Field(1800.0, gt=0)
    min_fraction: float = Field(0.8, gt=0.5, le=1.0)
    # A gap in readings longer than this restarts the window: we cannot vouch for it.
    max_gap_s: float = Field(60.0, gt=0)
    # Clears when min_fraction of the readings over clear_hold_s are below threshold - margin.
    clear_margin_bpm: float = Field(5.0, ge=0)
    clear_hold_s: float = Field(300.0, gt=0)
    # An open tachycardia alert whose strap has sent no reading with contact for this long (taken
    # off, out of range) is closed, saying the heart rate is no longer measured, instead of
    # repeating all night about a value nobody can see (the fever alert never closes this way).
    unobserved_close_s: float = Field(900.0, gt=0)

    @model_validator(mode="after")
    def _windows(self) -> TachycardiaThresholds:
        if self.window_alone_s < self.window_s:
            raise ValueError("window_alone_s must be at least window_s")
        return self


class StaleDataThresholds(_Strict):
    """Technical alarms: on by default (xDrip+ #3380, Nightscout #1061)."""

    temperature_s: float = Field(600.0, gt=0)
    heart_rate_s: float = Field(300.0, gt=0)
    # The missing-data window follows the device: at least this many expected sample intervals
    # (a patch reporting every 15 min is not "silent" after 10 min).
    missed_intervals: float = Field(3.0, ge=1.0)
    # With no continuous temperature source configured (an oral thermometer only), no
    # temperature from any source for this long is an alarm: Scott et al. 2025 had outpatients
    # take their temperature every 8 h (clinical.md §2.3); one hour of grace.
    spot_check_temperature_s: float = Field(9 * 3600.0, gt=0)
    contact_lost_s: float = Field(120.0, gt=0)
    disconnected_s: float = Field(300.0, gt=0)
    # Below 100: a level is never above 100 %, so 100 would alarm on every battery reading.
    battery_low_percent: float = Field(20.0, ge=0, lt=100)
    # Hysteresis (reliability.md §1 alarm fatigue: "hysteresis on clearing"): BATTERY_LOW clears
    # only at battery_low_percent + this margin, so a level flickering 19/20/21 % alarms once.
    battery_clear_margin_percent: float = Field(5.0, ge=0, le=100)
    # A temperature as the sensor reports it (before the site offset) below this is taken as a
    # patch off the skin, not a patient: it counts as lost sensor contact, so a fallen patch
    # reading room air can neither clear a fever nor look like normal data. Inference from clinical.md §3 (false patch readings
    # from a low-placed patch) and §6 (off-body: ask for an oral temperature); NEWS2 already
    # scores <= 35.0 °C as 3, so real readings this low are an emergency the patch cannot judge.
    off_body_below_c: float = Field(34.0, ge=25.0, le=37.0)


class HubHealthThresholds(_Strict):
    """The hub's own resources. reliability.md §2 recommends "a bounded outbox where overflow
    raises a technical alarm" (checklist item 8: a full outbox does not drop silently)."""

    # Paho C's maxBufferedMessages defaults to 100 (reliability.md §2): an outbox holding more
    # unsent messages than that means alerts are not reaching the care team.
    outbox_pending_max: int = Field(100, ge=1)
    # Hysteresis: publishing the alarm itself adds to the outbox, so clearing right at the limit
    # would make the alarm feed itself (raise, clear, raise...). Clear once half has drained.
    outbox_clear_pending: int = Field(50, ge=0)
    # 200 MB (10^6 bytes): room for the SQLite WAL, the alert journal and the outbox.
    disk_free_min_bytes: int = Field(200_000_000, ge=0)
    # Hysteresis as above: DISK_LOW clears at disk_free_min_bytes + this margin.
    disk_clear_margin_bytes: int = Field(50_000_000, ge=0)
    # The broker unreachable this long is itself a technical alarm (reliability.md §1: in a
    # distributed alarm system, losing the broker or bridge is a technical alarm). It reaches the
    # care team once the link is back, and shows at once in systemd STATUS and the journal.
    broker_unreachable_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> HubHealthThresholds:
        if self.outbox_clear_pending >= self.outbox_pending_max:
            raise ValueError("outbox_clear_pending must be below outbox_pending_max")
        return self


class Thresholds(_Strict):
    fever: FeverThresholds = FeverThresholds()
    tachycardia: TachycardiaThresholds = TachycardiaThresholds()
    stale: StaleDataThresholds = StaleDataThresholds()
    hub: HubHealthThresholds = HubHealthThresholds()
    # Issue 13 (docs/protocols.md): SpO2 and systolic pressure, and the care-team-only notice.
    emergency: EmergencyThresholds = EmergencyThresholds()
    temperature_trend: TemperatureTrendThresholds = TemperatureTrendThresholds()

    def problems(self) -> list[str]:
        """Settings each valid alone that together could never alarm or never clear, as
        ``section.field: reason`` lines (paths relative to ``thresholds``). Those that depend on
        the configured devices' profiles are checked in :func:`daemon.config.validate_with_profiles`."""
        out: list[str] = []
        f, tachy, stale = self.fever, self.tachycardia, self.stale
        if f.confirm_min_span_s > f.confirm_window_s:
            # The window only ever holds readings within confirm_window_s of the newest one.
            out.append(
                f"fever.confirm_min_span_s: {f.confirm_min_span_s:g} s is longer than "
                f"confirm_window_s ({f.confirm_window_s:g} s): readings in the window never span "
                "that long, so no fever could ever be confirmed"
            )
        fever_band = f.threshold_c - f.clear_margin_c
        if fever_band <= stale.off_body_below_c:
            out.append(
                f"fever.clear_margin_c: threshold_c - clear_margin_c = {fever_band:.2f} °C is not "
                f"above stale.off_body_below_c ({stale.off_body_below_c:g} °C): every reading "
                "cool enough to clear is taken as a patch off the skin, so a fever alert could "
                "never clear"
            )
        elif fever_band <= NEWS2_NORMAL_TEMPERATURE_LOW_C:
            out.append(
                f"fever.clear_margin_c: threshold_c - clear_margin_c = {fever_band:.2f} °C is not "
                f"above {NEWS2_NORMAL_TEMPERATURE_LOW_C:g} °C, the bottom of NEWS2's normal band: "
                "a patient without fever would never read below it, so a fever alert would "
                "never clear"
            )
        heart_band = tachy.threshold_bpm - tachy.clear_margin_bpm
        if heart_band <= NEWS2_NORMAL_PULSE_LOW_BPM:
            out.append(
                f"tachycardia.clear_margin_bpm: threshold_bpm - clear_margin_bpm = "
                f"{heart_band:g} bpm is not above {NEWS2_NORMAL_PULSE_LOW_BPM:g} bpm, the bottom "
                "of NEWS2's normal pulse band: a resting heart rate would never fall below it, "
                "so a tachycardia alert would never clear"
            )
        trend = self.temperature_trend
        if trend.enabled and trend.fever_c > f.threshold_c:
            # The notice is for afebrile readings; above the fever rule's threshold it would
            # judge (and learn from) readings the fever rule already alarms on.
            out.append(
                f"temperature_trend.fever_c: {trend.fever_c:g} °C is above fever.threshold_c "
                f"({f.threshold_c:g} °C): the care-team notice would learn fevers as baseline"
            )
        battery_clear = stale.battery_low_percent + stale.battery_clear_margin_percent
        if battery_clear > 100:
            out.append(
                f"stale.battery_clear_margin_percent: battery_low_percent + "
                f"battery_clear_margin_percent = {battery_clear:g} % is above 100 %: a "
                "low-battery alarm could never clear"
            )
        return out

