"""Technical alarms: the hub cannot see the patient properly. On by default (xDrip+ #3380,
Nightscout #1061/PR #1201: a missed-readings alarm, independent of the clinical alarms, so that
snoozing one never hides the other). Pure: time comes in as arguments and on readings.

One ``TechnicalAlarms`` instance per patient (device ids are per patient). Conditions and keys,
one open alert per (kind, device):

| kind | raised | cleared | severity |
|---|---|---|---|
| NO_DATA (per device) | an expected vital has had no usable reading for temperature_s / heart_rate_s | every expected vital of the device has a fresh reading | MEDIUM if temperature is stale, else LOW |
| SENSOR_CONTACT_LOST | contact absent for contact_lost_s | a reading with contact (True, or None = not reported) | LOW |
| DEVICE_DISCONNECTED | disconnected for disconnected_s | reconnect | LOW |
| BATTERY_LOW | battery <= battery_low_percent | battery >= low + battery_clear_margin_percent | LOW |
| ADAPTER_UNAVAILABLE (hub) | immediately | ``adapter_problem(None)`` | MEDIUM |
| OUTBOX_BACKLOG (hub) | pending > outbox_pending_max | pending <= outbox_clear_pending | LOW |
| DISK_LOW (hub) | free < disk_free_min_bytes | free >= min + disk_clear_margin_bytes | LOW |
| BROKER_UNREACHABLE (hub) | no MQTT connection for broker_unreachable_s | connected again | MEDIUM |
| HUB_FAULT (hub) | a scheduled job keeps failing (the shell decides) | the job runs again | MEDIUM |

Severity: LOW is "awareness" in IEC 60601-1-8 (reliability.md §1), right for a device problem the
patient or caregiver can fix. NO_DATA for temperature is MEDIUM because the fever, the primary CRS
trigger, would go unseen; a dead adapter blinds every wearable at once, hence MEDIUM too.

NO_DATA is per device rather than per (device, vital) because ``AlertTransition`` carries no vital,
so after a restart a per-vital alarm could not be matched back to its condition; most wearables
send one vital, and a device sending both gets one alarm whose severity rises if temperature goes
stale too. A reading without sensor contact is not usable data, so it does not count as fresh.

value/unit/threshold: seconds ("s") for the time-based alarms (age of the data, or how long the
condition has lasted), "%" for battery, "messages" for the outbox, "B" for disk; threshold is the
limit that was crossed (for CLEARED, the limit that had to be regained).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from daemon.alert_book import AlertBook, IdFactory, uuid4_id
from daemon.alerts import AlertKind, AlertTransition, Severity
from daemon.readings import Reading, Vital
from daemon.thresholds import HubHealthThresholds, StaleDataThresholds

AlarmKey = tuple[AlertKind, str | None]

_HUB_KINDS = frozenset(
    {
        AlertKind.ADAPTER_UNAVAILABLE,
        AlertKind.OUTBOX_BACKLOG,
        AlertKind.DISK_LOW,
        AlertKind.BROKER_UNREACHABLE,
        AlertKind.HUB_FAULT,
    }
)
_DEVICE_KINDS = frozenset(
    {
        AlertKind.NO_DATA,
        AlertKind.SENSOR_CONTACT_LOST,
        AlertKind.DEVICE_DISCONNECTED,
        AlertKind.BATTERY_LOW,
    }
)


def alarm_key(transition: AlertTransition) -> AlarmKey | None:
    """Which technical condition a journal transition belongs to (None: not a technical alarm)."""
    if transition.kind in _HUB_KINDS:
        return (transition.kind, None)
    if transition.kind in _DEVICE_KINDS and transition.device is not None:
        return (transition.kind, transition.device)
    return None


@dataclass
class _Feed:
    """One expected (device, vital) stream."""

    since: datetime  # monitoring start: a device that never sends must still alarm
    last_reading: datetime | None = None


class TechnicalAlarms:
    """Stale data, sensor contact, connection, battery, adapter, outbox and disk alarms."""

    def __init__(
        self,
        stale: StaleDataThresholds,
        hub: HubHealthThresholds | None = None,
        *,
        new_id: IdFactory = uuid4_id,
    ) -> None:
        self._stale = stale
        self._hub = hub if hub is not None else HubHealthThresholds()
        self._book: AlertBook[AlarmKey] = AlertBook(new_id=new_id)
        self._feeds: dict[str, dict[Vital, _Feed]] = {}
        self._contact_absent_since: dict[str, datetime] = {}
        self._disconnected_since: dict[str, datetime] = {}
        self._last_battery_at: dict[str, datetime] = {}
        self._broker_down_since: datetime | None = None
        self._clock: datetime | None = None  # latest time seen, to judge whether data is fresh
        self._started = False

    # -- inputs ----------------------------------------------------------------------------

    def expect(self, device: str, vitals: set[Vital], now: datetime) -> None:
        """Start freshness monitoring of ``device``'s ``vitals`` (configured devices, at start-up).

        Vitals without a stale-data limit (only temperature and heart rate have one) are
        ignored. Calling it again never restarts an existing stream's clock: that would hide
        staleness. Alarms are raised by ``tick``, never here, so no transition can be dropped.
        """
        self._seen(now)
        feeds = self._feeds.setdefault(device, {})
        for vital in vitals:
            if self._limit(vital) is not None and vital not in feeds:
                feeds[vital] = _Feed(since=now)

    def observe(self, reading: Reading) -> list[AlertTransition]:
        """Freshness (temperature, heart rate), sensor contact and battery level."""
        self._seen(reading.observed_at)
        if reading.vital is Vital.BATTERY:
            return self._observe_battery(reading)
        out: list[AlertTransition] = []
        if reading.sensor_contact is False:
            out.extend(self.contact_lost(reading.device, reading.observed_at))
        else:
            out.extend(self._contact_back(reading.device, reading.observed_at))
            out.extend(self._observe_fresh(reading))
        return out

    def contact_lost(self, device: str, now: datetime) -> list[AlertTransition]:
        """The device reported no skin contact (a NoReading with contact_lost, or a reading with
        sensor_contact False). Alarms once contact has been absent for contact_lost_s."""
        self._seen(now)
        self._contact_absent_since.setdefault(device, now)
        return self._check_contact(device, now)

    def connection_changed(
        self, device: str, connected: bool, now: datetime
    ) -> list[AlertTransition]:
        """DEVICE_DISCONNECTED after disconnected_s without a connection; reconnect clears."""
        self._seen(now)
        if not connected:
            self._disconnected_since.setdefault(device, now)
            return self._check_disconnected(device, now)
        since = self._disconnected_since.pop(device, None)
        key: AlarmKey = (AlertKind.DEVICE_DISCONNECTED, device)
        if key not in self._book:
            return []
        lasted = None if since is None else (now - since).total_seconds()
        return [self._book.clear(key, value=lasted, threshold=self._stale.disconnected_s, at=now)]

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

    def _hub_condition(self, kind: AlertKind, present: bool, now: datetime) -> list[AlertTransition]:
        self._seen(now)
        key: AlarmKey = (kind, None)
        if present:
            if key in self._book:
                return []
            return [self._raise(key, Severity.MEDIUM, None, "", None, now, None)]
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
        for device in list(self._feeds):
            out.extend(self._check_no_data(device, now))
        for device in list(self._contact_absent_since):
            out.extend(self._check_contact(device, now))
        for device in list(self._disconnected_since):
            out.extend(self._check_disconnected(device, now))
        out.extend(self._check_broker(now))
        return out

    # -- state -----------------------------------------------------------------------------

    def open_alerts(self) -> list[AlertTransition]:
        """The latest transition of each open technical alarm."""
        return self._book.open_alerts()

    def restore(self, open_alerts: Iterable[AlertTransition]) -> None:
        """Re-open alarms after a restart without raising them again; clinical and CLEARED
        transitions are ignored. Each clears the normal way: NO_DATA on fresh data for every
        expected vital, contact on a reading with contact, DISCONNECTED on reconnect, adapter on
        ``adapter_problem(None)``, battery/outbox/disk on a good value. Call before any input."""
        if self._started:
            raise RuntimeError("restore() must be called before any input")
        self._book.restore(open_alerts, alarm_key)

    # -- internals -------------------------------------------------------------------------

    def _seen(self, at: datetime) -> None:
        self._started = True
        if self._clock is None or at > self._clock:
            self._clock = at

    def _limit(self, vital: Vital) -> float | None:
        if vital is Vital.TEMPERATURE:
            return self._stale.temperature_s
        if vital is Vital.HEART_RATE:
            return self._stale.heart_rate_s
        return None

    def _raise(
        self,
        key: AlarmKey,
        severity: Severity,
        value: float | None,
        unit: str,
        threshold: float | None,
        at: datetime,
        device: str | None,
    ) -> AlertTransition:
        return self._book.raise_alert(
            key,
            kind=key[0],
            severity=severity,
            value=value,
            unit=unit,
            threshold=threshold,
            at=at,
            device=device,
        )

    def _observe_fresh(self, reading: Reading) -> list[AlertTransition]:
        if self._limit(reading.vital) is None:
            return []
        feeds = self._feeds.get(reading.device)
        if feeds is None:
            feeds = self._feeds[reading.device] = {}
        # A device sending a vital nobody expect()ed is monitored from now on anyway: a stream
        # that stops must never look normal. (get first: this runs for every reading, and
        # setdefault would build a throw-away _Feed each time.)
        feed = feeds.get(reading.vital)
        if feed is None:
            feed = feeds[reading.vital] = _Feed(since=reading.observed_at)
        if feed.last_reading is None or reading.observed_at > feed.last_reading:
            feed.last_reading = reading.observed_at
        key: AlarmKey = (AlertKind.NO_DATA, reading.device)
        if key not in self._book:
            return []
        assert self._clock is not None  # set by _seen
        # Fresh = every expected vital has a reading younger than its limit, judged at the
        # latest time seen (a late-delivered old reading is not fresh).
        ages: list[tuple[float, float]] = []
        for vital, each in feeds.items():
            limit = self._limit(vital)
            assert limit is not None  # only vitals with a limit get a feed
            if each.last_reading is None:
                return []  # another expected vital has never arrived
            ages.append(((self._clock - each.last_reading).total_seconds(), limit))
        if any(age >= limit for age, limit in ages):
            return []
        age, limit = max(ages)
        return [self._book.clear(key, value=age, threshold=limit, at=reading.observed_at)]

    def _check_no_data(self, device: str, now: datetime) -> list[AlertTransition]:
        stale: list[tuple[Vital, float, float]] = []
        for vital, feed in self._feeds.get(device, {}).items():
            limit = self._limit(vital)
            assert limit is not None
            age = (now - (feed.last_reading or feed.since)).total_seconds()
            if age >= limit:
                stale.append((vital, age, limit))
        if not stale:
            return []
        # The worst stale vital describes the alarm: temperature first (the fever goes unseen).
        stale.sort(key=lambda s: (s[0] is Vital.TEMPERATURE, s[1]), reverse=True)
        vital, age, limit = stale[0]
        severity = Severity.MEDIUM if vital is Vital.TEMPERATURE else Severity.LOW
        key: AlarmKey = (AlertKind.NO_DATA, device)
        if key not in self._book:
            return [self._raise(key, severity, age, "s", limit, now, device)]
        changed = self._book.worsen(
            key, kind=AlertKind.NO_DATA, severity=severity, value=age, threshold=limit, at=now
        )
        return [] if changed is None else [changed]

    def _check_contact(self, device: str, now: datetime) -> list[AlertTransition]:
        key: AlarmKey = (AlertKind.SENSOR_CONTACT_LOST, device)
        since = self._contact_absent_since.get(device)
        if since is None or key in self._book:
            return []
        absent = (now - since).total_seconds()
        if absent < self._stale.contact_lost_s:
            return []
        return [
            self._raise(key, Severity.LOW, absent, "s", self._stale.contact_lost_s, now, device)
        ]

    def _contact_back(self, device: str, at: datetime) -> list[AlertTransition]:
        since = self._contact_absent_since.pop(device, None)
        key: AlarmKey = (AlertKind.SENSOR_CONTACT_LOST, device)
        if key not in self._book:
            return []
        lasted = None if since is None else max(0.0, (at - since).total_seconds())
        return [self._book.clear(key, value=lasted, threshold=self._stale.contact_lost_s, at=at)]

    def _check_disconnected(self, device: str, now: datetime) -> list[AlertTransition]:
        key: AlarmKey = (AlertKind.DEVICE_DISCONNECTED, device)
        since = self._disconnected_since.get(device)
        if since is None or key in self._book:
            return []
        lasted = (now - since).total_seconds()
        if lasted < self._stale.disconnected_s:
            return []
        return [
            self._raise(key, Severity.LOW, lasted, "s", self._stale.disconnected_s, now, device)
        ]

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
