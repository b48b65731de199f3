"""`crs-hub run`: the daemon's lifecycle under systemd (Type=notify, watchdog) or by hand.

READY=1 goes out only once the store is open, the MQTT link has connected (or the wait for it
has timed out: a hub with a dead broker must still watch the patient and raise its own technical
alarm), and the Bluetooth sessions are running. WATCHDOG=1 is sent from the event loop only
while the hub's own tick keeps running, so a wedged loop gets restarted by systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.bluetooth import BluetoothManager, SessionSpec
from daemon.clock_sync import clock_synchronized
from daemon.config import Config
from daemon.hub import Hub, system_clock
from daemon.monitor import AnnunciatorProblem, MonitorOutput
from daemon.sd_notify import Notifier

if TYPE_CHECKING:
    from daemon.annunciator.player import Annunciator
    from daemon.status_page import StatusPage

log = logging.getLogger(__name__)


def session_specs(hub: Hub) -> list[SessionSpec]:
    return [
        SessionSpec.from_profile(device_id, state.settings.address, state.profile,
                                 adapter=hub.config.hub.adapter)
        for device_id, state in hub.devices.items()
    ]


async def start_status_page(hub: Hub) -> StatusPage:
    """The patient's page as a sink of the hub (imported here, so the web server's memory is paid only
    when the page is on). It starts with the alerts restored from the journal."""
    from daemon.status_page import StatusPage

    page = StatusPage(hub.config, hub.config.status_page, hub.submit, clock=hub.clock)
    page.load_history(hub.store.path)
    hub.add_sink(page)
    hub.link_listeners.append(page.set_link)
    page.set_link(hub.link.connected)
    page.on_output(MonitorOutput(), hub.monitor.snapshot(hub.clock()))
    await page.start()
    log.info("status page at %s", page.url)
    return page


def start_annunciator(hub: Hub, page: StatusPage | None) -> Annunciator:
    """The hub's own audible alarm, a sink like the others. A hub that cannot sound raises the
    annunciator_unavailable technical alarm, shown on the page and in systemd STATUS."""
    from daemon.annunciator.player import Annunciator

    def on_problem(reason: str | None) -> None:
        hub.sound_problem = reason
        if page is not None:
            page.set_sound_problem(reason)
        hub.submit(AnnunciatorProblem(reason, hub.clock(), hub._mono()))

    config = hub.config
    annunciator = Annunciator(
        config.annunciator, on_problem=on_problem,
        spell_numbers=(config.patient.care_team_phone, config.patient.emergency_number))
    hub.add_sink(annunciator)
    annunciator.sync(hub.monitor.snapshot(hub.clock()))  # restored alerts sound at once
    annunciator.start()
    return annunciator


def status_line(hub: Hub, bluetooth: BluetoothManager | None) -> str:
    connected = sum(d.connected for d in hub.devices.values())
    broker = "broker connected" if hub.link.connected else "BROKER UNREACHABLE"
    if hub.store_failures:
        broker += f", STORE FAILING ({hub.store_failures} alert(s) not journaled)"
    if clock_synchronized() is False:
        broker += ", CLOCK NOT SYNCHRONISED (event times may be off)"
    if hub.sound_problem:
        broker += ", CANNOT SOUND ALARMS"
    if hub.failing_jobs:
        broker += f", HUB FAULT (failing: {', '.join(hub.failing_jobs)})"
    open_alerts = len(hub.monitor.open_alerts())
    return (f"{connected}/{len(hub.devices)} wearables connected, {broker}, "
            f"{open_alerts} open alert(s), outbox {hub.outbox.pending}")


async def run_service(
    config: Config,
    *,
    clock: Callable[[], datetime] = system_clock,
    stop: asyncio.Event | None = None,
    mqtt_wait_s: float = 10.0,
    tick_interval_s: float = 1.0,
    heartbeat_interval_s: float = 30.0,
    with_bluetooth: bool = True,
    on_started: Callable[[Hub], None] | None = None,
) -> int:
    notifier = Notifier.from_env()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    hub = Hub(config, clock=clock, tick_interval_s=tick_interval_s,
              heartbeat_interval_s=heartbeat_interval_s)
    await hub.start()
    page = await start_status_page(hub) if config.status_page.enabled else None
    annunciator = start_annunciator(hub, page) if config.annunciator.enabled else None
    notifier.status("connecting to the MQTT broker")
    if not await hub.wait_connected(mqtt_wait_s):
        log.error("MQTT broker %s:%s unreachable; alerts wait in the outbox",
                  config.mqtt.host, config.mqtt.port)
    bluetooth: BluetoothManager | None = None
    if with_bluetooth and hub.devices:
        bluetooth = BluetoothManager(session_specs(hub), hub)
        await bluetooth.start()
    notifier.ready(status_line(hub, bluetooth))
    log.info("crs-hub ready: %s", status_line(hub, bluetooth))
    if on_started is not None:
        on_started(hub)

    watchdog_s = notifier.watchdog_interval()
    # The scheduler's tick job stamps liveness; if it stops running, the pings stop too.
    stale_after_s = max(10.0, 5 * tick_interval_s)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(watchdog_s or 5.0, 5.0))
            if hub.failing_jobs:
                log.error("withholding the watchdog ping: %s keep failing",
                          ", ".join(hub.failing_jobs))
            elif time.monotonic() - hub.last_tick_monotonic < stale_after_s:
                notifier.watchdog()
            else:
                log.error("the hub's tick has not run for %.0f s; withholding the watchdog ping",
                          time.monotonic() - hub.last_tick_monotonic)
            notifier.status(status_line(hub, bluetooth))
    finally:
        notifier.stopping()
        if bluetooth is not None:
            await bluetooth.stop()
        if annunciator is not None:
            await annunciator.stop()
        if page is not None:
            await page.stop()
        await hub.stop()
        notifier.close()
    return 0
