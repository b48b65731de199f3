"""Technical alarms: the hub cannot see the patient properly. On by default (xDrip+ #3380,
Nightscout #1061/PR #1201: a missed-readings alarm, independent of the clinical alarms, so that
snoozing one never hides the other). Pure: time comes in as arguments and on readings.

One ``TechnicalAlarms`` instance per patient (device ids are per patient).

**One condition per wearable.** A strap taken off first reports no contact, then drops the
connection, then sends nothing: that is one thing happening, so it is ONE alarm per wearable whose
kind escalates (SENSOR_CONTACT_LOST → IMPLAUSIBLE_FALL → DEVICE_DISCONNECTED → NO_DATA, severity
latching), and it clears when the wearable is fully back (connected, in contact, fresh data, no
implausible fall). Before, each was its own alarm: three for one strap taken off.

| kind (key) | raised | cleared | severity |
|---|---|---|---|
| wearable alarm (per device) | contact absent for contact_lost_s; an implausible temperature fall (at once); disconnected for disconnected_s; an expected vital without usable reading for its window | every condition gone | LOW; MEDIUM for a fall or stale temperature |
| NO_DATA (patient, device None) | no continuous temperature source configured, and no temperature from any source for spot_check_temperature_s | any temperature reading | MEDIUM |
| BATTERY_LOW | battery <= battery_low_percent | battery >= low + battery_clear_margin_percent | LOW |
| ADAPTER_UNAVAILABLE (hub) | immediately | ``adapter_problem(None)`` | MEDIUM |
| OUTBOX_BACKLOG (hub) | pending > outbox_pending_max | pending <= outbox_clear_pending | LOW |
| DISK_LOW (hub) | free < disk_free_min_bytes | free >= min + disk_clear_margin_bytes | LOW |
| BROKER_UNREACHABLE (hub) | no MQTT connection for broker_unreachable_s | connected again | MEDIUM |
| HUB_FAULT (hub) | a scheduled job keeps failing (the shell decides) | the job runs again | MEDIUM |
| ANNUNCIATOR_UNAVAILABLE (hub) | the hub cannot sound (no sound card, aplay failing) | it sounds again | MEDIUM |
| PUBLISH_REFUSED (hub) | the broker refuses messages (v5 PUBACK failure code) | none refused | MEDIUM |
| CARE_TEAM_NOT_REACHED (hub) | a high+ event has no delivery receipt in time (not while the broker is unreachable) | all confirmed or expired | HIGH |

The window of an expected vital is temperature_s / heart_rate_s, or ``missed_intervals`` of the
device's expected sample interval if that is longer (``expect(interval_s=...)``).

**Wear.** A spot-check device (``expect(spot_check=True)``, or readings marked ``spot_check``) is
not expected on a schedule: it never raises a wearable alarm. A part-time wearable
(``part_time=True``: a strap worn during the day) does not alarm on being taken off; a
continuous temperature source always does, whatever it is marked. And no silence passes: with
no continuous temperature source, no temperature from any source for spot_check_temperature_s
is the patient-level NO_DATA.

**Implausible fall** (see daemon.temperature_fall): the temperature fell faster than a fever can
break, from the fever clear band or above. MEDIUM: the fever may be going unseen, so the patient
is asked to check the patch and take an oral reading; the fall ends when the readings come back
or a spot-check reading arrives.

Severity: LOW is "awareness" in IEC 60601-1-8 (reliability.md §1), right for a device problem the
patient or caregiver can fix. Stale temperature is MEDIUM because the fever, the primary CRS
trigger, would go unseen; a dead adapter blinds every wearable at once, hence MEDIUM too. A
reading without sensor contact is not usable data, so it does not count as fresh.

value/unit/threshold: for the wearable alarm, seconds ("s") the worst condition has lasted and
its limit (on CLEARED: how long the alarm was open, threshold None); "%" for battery,
"messages" for the outbox, "B" for disk, "s" for the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertTransition, Severity
from daemon.readings import Reading, Vital
from daemon.temperature_fall import FallWatch, fall_watch_for
from daemon.thresholds import FeverThresholds, HubHealthThresholds, StaleDataThresholds

# (condition, device): "wearable" for the one alarm per wearable, "no_temperature" for the
# patient-level silence, else the kind itself (battery per device; hub conditions, device None).
AlarmKey = tuple[str, str | None]
WEARABLE = "wearable"
NO_TEMPERATURE = "no_temperature"

_HUB_KINDS = frozenset(
    {
        AlertKind.ADAPTER_UNAVAILABLE,
        AlertKind.OUTBOX_BACKLOG,
        AlertKind.DISK_LOW,
        AlertKind.BROKER_UNREACHABLE,
        AlertKind.HUB_FAULT,
        AlertKind.ANNUNCIATOR_UNAVAILABLE,
    }
)
# The kinds of the one alarm per wearable, in escalation order (worst last).
WEARABLE_KINDS = (
    AlertKind.SENSOR_CONTACT_LOST,
    AlertKind.IMPLAUSIBLE_FALL,
    AlertKind.DEVICE_DISCONNECTED,
    AlertKind.NO_DATA,
)


def alarm_key(transition: AlertTransition) -> AlarmKey | None:
    """Which technical condition a journal transition belongs to (None: not a technical alarm)."""
    if transition.kind in _HUB_KINDS:
        return (transition.kind, None)
    if transition.kind is AlertKind.NO_DATA and transition.device is None:
        return (NO_TEMPERATURE, None)
    if transition.device is None:
        return None
    if transition.kind in WEARABLE_KINDS:
        return (WEARABLE, transition.device)
    if transition.kind is AlertKind.BATTERY_LOW:
        return (AlertKind.BATTERY_LOW, transition.device)
    return None


@dataclass
class _Feed:
    """One expected (device, vital) stream."""

    since: datetime  # monitoring start: a device that never sends must still alarm
    limit_s: float
    last_reading: datetime | None = None


@dataclass
class _Wearable:
    interval_s: float | None = None
    part_time: bool = False
    spot_check: bool = False
    feeds: dict[Vital, _Feed] = field(default_factory=dict)
    contact_absent_since: datetime | None = None
    disconnected_since: datetime | None = None
    fall: FallWatch | None = None

    @property
    def alarms_when_off(self) -> bool:
        # The primary temperature source always alarms; a part-time wearable otherwise not.
        return not self.part_time or Vital.TEMPERATURE in self.feeds


class TechnicalAlarms:
    """Wearable, battery, adapter, outbox, disk and broker alarms (see the module docstring)."""

    def __init__(
        self,
        stale: StaleDataThresholds,
        hub: HubHealthThresholds | None = None,
        *,
        fever: FeverThresholds | None = None,
        new_id: IdFactory = uuid4_id,
    ) -> None:
        self._stale = stale
        self._hub = hub if hub is not None else HubHealthThresholds()
        self._fever = fever if fever is not None else FeverThresholds()
        self._book: AlertBook[AlarmKey] = AlertBook(new_id=new_id, kind_order=WEARABLE_KINDS)
        self._wearables: dict[str, _Wearable] = {}
        self._last_battery_at: dict[str, datetime] = {}
        self._broker_down_since: datetime | None = None
        self._clock: datetime | None = None  # latest time seen, to judge whether data is fresh
        self._temperature_since: datetime | None = None  # armed by the first expect()
        self._last_temperature: datetime | None = None  # any source, with contact
        self._started = False

    # -- inputs ----------------------------------------------------------------------------

    def expect(
        self,
        device: str,
        vitals: set[Vital],
        now: datetime,
        *,
        interval_s: float | None = None,
        part_time: bool = False,
        spot_check: bool = False,
    ) -> None:
        """Declare a configured device (at start-up): its vitals, expected sample interval
        (the profile's; None = unknown, the default windows apply), whether it is worn
        part-time, or whether it is a spot-check device (never expected on a schedule).

        Vitals without a stale-data limit (only temperature and heart rate have one) are
        ignored. Calling it again never restarts an existing stream's clock: that would hide
        staleness. Alarms are raised by ``tick``, never here, so no transition can be dropped.
        """
        self._seen(now)
        if self._temperature_since is None:
            self._temperature_since = now
        w = self._wearables.get(device)
        if w is None:
            w = self._wearables[device] = _Wearable(interval_s, part_time, spot_check)
        if spot_check:
            return
        for vital in vitals:
            if vital not in w.feeds:
                self._add_feed(w, vital, now)

    def observe(self, reading: Reading) -> list[AlertTransition]:
        """Freshness (temperature, heart rate), sensor contact, falls and battery level."""
        self._seen(reading.observed_at)
        if reading.vital is Vital.BATTERY:
            return self._observe_battery(reading)
        if reading.sensor_contact is False:
            return self.contact_lost(reading.device, reading.observed_at)
        out: list[AlertTransition] = []
        at = reading.observed_at
        w = self._wearable(reading.device)
        w.contact_absent_since = None
        if reading.vital is Vital.TEMPERATURE:
            out.extend(self._temperature_arrived(at))
            if reading.spot_check or w.spot_check:
                for device, other in self._wearables.items():
                    if other.fall is not None and other.fall.spot_check():
                        out.extend(self._update(device, at))
                return out
        feed = w.feeds.get(reading.vital)
        if feed is None and self._base_limit(reading.vital) is not None and not w.spot_check:
            # A device sending a vital nobody expect()ed is monitored from now on anyway: a
            # stream that stops must never look normal.
            feed = self._add_feed(w, reading.vital, at)
        if feed is not None and (feed.last_reading is None or at > feed.last_reading):
            feed.last_reading = at
        fell = (w.fall.observe(at, reading.value)
                if reading.vital is Vital.TEMPERATURE and w.fall is not None else None)
        # Time-based conditions are raised by tick; a reading can only start a fall (raised at
        # once) or help clear an open alarm. Skipping the rest keeps a 1 Hz stream cheap.
        if fell or (WEARABLE, reading.device) in self._book:
            out.extend(self._update(reading.device, at))
        return out

    def contact_lost(self, device: str, now: datetime) -> list[AlertTransition]:
        """The device reported no skin contact (a NoReading with contact_lost, or a reading with
        sensor_contact False). Part of the wearable alarm once absent for contact_lost_s."""
        self._seen(now)
        w = self._wearable(device)
        if w.contact_absent_since is None:
            w.contact_absent_since = now
        return self._update(device, now)

    def connection_changed(
        self, device: str, connected: bool, now: datetime
    ) -> list[AlertTransition]:
        """Part of the wearable alarm after disconnected_s without a connection."""
        self._seen(now)
        w = self._wearable(device)
        if not connected:
            if w.disconnected_since is None:
                w.disconnected_since = now
        else:
            w.disconnected_since = None
        return self._update(device, now)

    def adapter_problem(self, reason: str | None, now: datetime) -> list[AlertTransition]:
        """The Bluetooth adapter is unusable (``reason``), or fine again (None). No delay: every
        wearable is blind at once. The reason text is for the log; the alert carries no text."""
        self._seen(now)
        key: AlarmKey = (AlertKind.ADAPTER_UNAVAILABLE, None)
        if reason is not None:
            if key in self._book:
                return []
            return [self._raise(key, Severity.MEDIUM, None, "", None, now, None)]
        if key not in self._book:
            return []
        return [self._book.clear(key, value=None, threshold=None, at=now)]

    def hub_fault(self, reason: str | None, now: datetime) -> list[AlertTransition]:
        """The hub's own machinery is failing (``reason``) or working again (None). No delay:
        a hub that cannot run its checks only looks like it is watching."""
        return self._hub_condition(AlertKind.HUB_FAULT, reason is not None, now)

    def annunciator_problem(self, reason: str | None, now: datetime) -> list[AlertTransition]:
        """The hub cannot sound its own alarm (``reason``) or can again (None): the patient at
        home would not hear an alert, so the page and the care team must know."""
        return self._hub_condition(AlertKind.ANNUNCIATOR_UNAVAILABLE, reason is not None, now)

    def delivery_health(self, refused: int, unreached: int,
                        now: datetime) -> list[AlertTransition]:
        """PUBLISH_REFUSED while the broker refuses messages (a broken ACL or quota: alerts are
        not leaving); CARE_TEAM_NOT_REACHED while a high-or-worse event has no delivery receipt
        in time, so the patient must phone. Not raised while BROKER_UNREACHABLE is open: that is
        the same condition, already one alarm telling the patient to call."""
        out = self._hub_condition(AlertKind.PUBLISH_REFUSED, refused > 0, now,
                                  value=float(refused), unit="messages")
        key: AlarmKey = (AlertKind.CARE_TEAM_NOT_REACHED, None)
        broker_down = (AlertKind.BROKER_UNREACHABLE, None) in self._book
        if unreached == 0 or key in self._book or not broker_down:
            out += self._hub_condition(AlertKind.CARE_TEAM_NOT_REACHED, unreached > 0, now,
                                       severity=Severity.HIGH, value=float(unreached),
                                       unit="events")
        return out

    def _hub_condition(self, kind: AlertKind, present: bool, now: datetime, *,
                       severity: Severity = Severity.MEDIUM, value: float | None = None,
                       unit: str = "") -> list[AlertTransition]:
        self._seen(now)
        key: AlarmKey = (kind, None)
        if present:
            if key in self._book:
                return []
            return [self._raise(key, severity, value, unit, None, now, None)]
        if key not in self._book:
            return []
        return [self._book.clear(key, value=None, threshold=None, at=now)]

    def broker_connection(self, connected: bool, now: datetime) -> list[AlertTransition]:
        """BROKER_UNREACHABLE after broker_unreachable_s without an MQTT connection (call with
        False at start-up too: a broker that never answers must alarm); a connection clears."""
        self._seen(now)
        key: AlarmKey = (AlertKind.BROKER_UNREACHABLE, None)
        if not connected:
            if self._broker_down_since is None:
                self._broker_down_since = now
            return self._check_broker(now)
        since, self._broker_down_since = self._broker_down_since, None
        if key not in self._book:
            return []
        lasted = None if since is None else (now - since).total_seconds()
        return [self._book.clear(key, value=lasted, threshold=self._hub.broker_unreachable_s,
                                 at=now)]

    def _check_broker(self, now: datetime) -> list[AlertTransition]:
        key: AlarmKey = (AlertKind.BROKER_UNREACHABLE, None)
        since = self._broker_down_since
        if since is None or key in self._book:
            return []
        lasted = (now - since).total_seconds()
        if lasted < self._hub.broker_unreachable_s:
            return []
        return [self._raise(key, Severity.MEDIUM, lasted, "s", self._hub.broker_unreachable_s,
                            now, None)]

    def hub_resources(
        self, outbox_pending: int, disk_free_bytes: int, now: datetime
    ) -> list[AlertTransition]:
        """Outbox backlog and free disk, each with hysteresis (see HubHealthThresholds)."""
        self._seen(now)
        h = self._hub
        out: list[AlertTransition] = []
        backlog: AlarmKey = (AlertKind.OUTBOX_BACKLOG, None)
        if backlog not in self._book and outbox_pending > h.outbox_pending_max:
            out.append(
                self._raise(
                    backlog,
                    Severity.LOW,
                    float(outbox_pending),
                    "messages",
                    float(h.outbox_pending_max),
                    now,
                    None,
                )
            )
        elif backlog in self._book and outbox_pending <= h.outbox_clear_pending:
            out.append(
                self._book.clear(
                    backlog,
                    value=float(outbox_pending),
                    threshold=float(h.outbox_clear_pending),
                    at=now,
                )
            )
        disk: AlarmKey = (AlertKind.DISK_LOW, None)
        clear_at = h.disk_free_min_bytes + h.disk_clear_margin_bytes
        if disk not in self._book and disk_free_bytes < h.disk_free_min_bytes:
            out.append(
                self._raise(
                    disk,
                    Severity.LOW,
                    float(disk_free_bytes),
                    "B",
                    float(h.disk_free_min_bytes),
                    now,
                    None,
                )
            )
        elif disk in self._book and disk_free_bytes >= clear_at:
            out.append(
                self._book.clear(
                    disk, value=float(disk_free_bytes), threshold=float(clear_at), at=now
                )
            )
        return out

    def tick(self, now: datetime) -> list[AlertTransition]:
        """Raise the alarms whose delay has elapsed by ``now``. Clears need new inputs."""
        self._seen(now)
        out: list[AlertTransition] = []
        for device in list(self._wearables):
            out.extend(self._update(device, now, clear=False))
        out.extend(self._check_no_temperature(now))
        out.extend(self._check_broker(now))
        return out

    # -- state -----------------------------------------------------------------------------

    def open_alerts(self) -> list[AlertTransition]:
        """The latest transition of each open technical alarm."""
        return self._book.open_alerts()

    def restore(self, open_alerts: Iterable[AlertTransition]) -> None:
        """Re-open alarms after a restart without raising them again; clinical and CLEARED
        transitions are ignored. Each clears the normal way: a wearable alarm once the wearable
        is connected, in contact, with fresh data; the adapter on ``adapter_problem(None)``;
        battery/outbox/disk on a good value. Call before any input."""
        if self._started:
            raise RuntimeError("restore() must be called before any input")
        self._book.restore(open_alerts, alarm_key)

    # -- internals -------------------------------------------------------------------------

    def _seen(self, at: datetime) -> None:
        self._started = True
        if self._clock is None or at > self._clock:
            self._clock = at

    def _wearable(self, device: str) -> _Wearable:
        w = self._wearables.get(device)
        if w is None:
            w = self._wearables[device] = _Wearable()
        return w

    def _base_limit(self, vital: Vital) -> float | None:
        if vital is Vital.TEMPERATURE:
            return self._stale.temperature_s
        if vital is Vital.HEART_RATE:
            return self._stale.heart_rate_s
        return None

    def _add_feed(self, w: _Wearable, vital: Vital, now: datetime) -> _Feed | None:
        limit = self._base_limit(vital)
        if limit is None:
            return None
        if w.interval_s is not None:
            limit = max(limit, self._stale.missed_intervals * w.interval_s)
        feed = w.feeds[vital] = _Feed(since=now, limit_s=limit)
        if vital is Vital.TEMPERATURE and w.fall is None:
            w.fall = fall_watch_for(self._fever, w.interval_s)
        return feed

    def _raise(
        self,
        key: AlarmKey,
        severity: Severity,
        value: float | None,
        unit: str,
        threshold: float | None,
        at: datetime,
        device: str | None,
        kind: AlertKind | None = None,
    ) -> AlertTransition:
        return self._book.raise_alert(
            key,
            kind=kind if kind is not None else AlertKind(key[0]),
            severity=severity,
            value=value,
            unit=unit,
            threshold=threshold,
            at=at,
            device=device,
        )

    def _due(self, w: _Wearable, now: datetime) -> list[tuple[AlertKind, Severity, float, float]]:
        """The wearable's conditions whose delay has passed: (kind, severity, lasted, limit)."""
        due: list[tuple[AlertKind, Severity, float, float]] = []
        if w.fall is not None and w.fall.fell_at is not None:
            lasted = max(0.0, (now - w.fall.fell_at).total_seconds())
            due.append((AlertKind.IMPLAUSIBLE_FALL, Severity.MEDIUM, lasted, 0.0))  # at once
        if not w.alarms_when_off:
            return due
        s = self._stale
        if w.contact_absent_since is not None:
            lasted = (now - w.contact_absent_since).total_seconds()
            if lasted >= s.contact_lost_s:
                due.append((AlertKind.SENSOR_CONTACT_LOST, Severity.LOW, lasted, s.contact_lost_s))
        if w.disconnected_since is not None:
            lasted = (now - w.disconnected_since).total_seconds()
            if lasted >= s.disconnected_s:
                due.append((AlertKind.DEVICE_DISCONNECTED, Severity.LOW, lasted, s.disconnected_s))
        for vital, feed in w.feeds.items():
            age = (now - (feed.last_reading or feed.since)).total_seconds()
            if age >= feed.limit_s:
                severity = Severity.MEDIUM if vital is Vital.TEMPERATURE else Severity.LOW
                due.append((AlertKind.NO_DATA, severity, age, feed.limit_s))
        return due

    def _active(self, w: _Wearable) -> bool:
        """Whether any condition is present at all, delay elapsed or not (blocks a clear)."""
        if w.fall is not None and w.fall.falling:
            return True
        if not w.alarms_when_off:
            return False
        if w.contact_absent_since is not None or w.disconnected_since is not None:
            return True
        assert self._clock is not None  # set by _seen
        # Fresh = every expected vital has a reading younger than its limit, judged at the
        # latest time seen (a late-delivered old reading is not fresh).
        return any(
            feed.last_reading is None
            or (self._clock - feed.last_reading).total_seconds() >= feed.limit_s
            for feed in w.feeds.values()
        )

    def _update(self, device: str, now: datetime, *, clear: bool = True) -> list[AlertTransition]:
        """Raise, escalate or (``clear``) clear the one alarm of ``device``."""
        w = self._wearables[device]
        key: AlarmKey = (WEARABLE, device)
        due = self._due(w, now)
        if due:
            rank = {k: i for i, k in enumerate(WEARABLE_KINDS)}
            kind, _, lasted, limit = max(due, key=lambda d: (rank[d[0]], d[1].rank, d[2]))
            severity = max((d[1] for d in due), key=lambda sv: sv.rank)
            if key not in self._book:
                return [self._raise(key, severity, lasted, "s", limit, now, device, kind)]
            changed = self._book.worsen(
                key, kind=kind, severity=severity, value=lasted, threshold=limit, at=now
            )
            return [] if changed is None else [changed]
        current = self._book.get(key)
        if not clear or current is None or self._active(w):
            return []
        lasted = max(0.0, (now - current.raised_at).total_seconds())
        return [self._book.clear(key, value=lasted, threshold=None, at=now)]

    def _temperature_arrived(self, at: datetime) -> list[AlertTransition]:
        if self._last_temperature is None or at > self._last_temperature:
            self._last_temperature = at
        key: AlarmKey = (NO_TEMPERATURE, None)
        if key not in self._book:
            return []
        return [self._book.clear(key, value=0.0, threshold=self._stale.spot_check_temperature_s,
                                 at=at)]

    def _check_no_temperature(self, now: datetime) -> list[AlertTransition]:
        """With no continuous temperature source, silence of every source is an alarm."""
        key: AlarmKey = (NO_TEMPERATURE, None)
        if self._temperature_since is None or key in self._book:
            return []
        if any(Vital.TEMPERATURE in w.feeds for w in self._wearables.values()):
            return []  # that source's own wearable alarm covers its silence
        limit = self._stale.spot_check_temperature_s
        age = (now - (self._last_temperature or self._temperature_since)).total_seconds()
        if age < limit:
            return []
        return [self._raise(key, Severity.MEDIUM, age, "s", limit, now, None, AlertKind.NO_DATA)]

    def _observe_battery(self, reading: Reading) -> list[AlertTransition]:
        device, at, level = reading.device, reading.observed_at, reading.value
        last = self._last_battery_at.get(device)
        if last is not None and at < last:
            return []  # an older level must not override a newer one
        self._last_battery_at[device] = at
        s = self._stale
        key: AlarmKey = (AlertKind.BATTERY_LOW, device)
        if key not in self._book and level <= s.battery_low_percent:
            return [self._raise(key, Severity.LOW, level, "%", s.battery_low_percent, at, device)]
        clear_at = s.battery_low_percent + s.battery_clear_margin_percent
        if key in self._book and level >= clear_at:
            return [self._book.clear(key, value=level, threshold=clear_at, at=at)]
        return []
