"""`crs-hub console`: the web console, its terminal watch mode, and password hashing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sqlite3
import sys
from datetime import UTC

import tornado.netutil

from daemon.config import ConfigError
from daemon.console.broker import NurseLinks, console_link, receipt_sender
from daemon.console.config import ConsoleConfig, load_console_config
from daemon.console.credentials import hash_password
from daemon.console.history import History
from daemon.console.service import Console, MalformedMessage, parse_message
from daemon.console.web import ConsoleWeb
from daemon.mqtt_link import IncomingMessage
from daemon.payloads import AlertEvent

log = logging.getLogger(__name__)
EXIT_USAGE = 2


def event_line(event: AlertEvent) -> str:
    """One line per alert transition, for a shell or a pager gateway (no patient message)."""
    at = event.event_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if event.state.value == "acknowledged":
        return (f"{at} ACK {event.alert_id} by {event.acknowledged_by or '?'} "
                f"{event.hub_id}/{event.patient_id} {event.kind.value}")
    value = "" if event.value is None else f" {event.value:g} {event.unit}"
    kind = "technical" if event.technical else "clinical"
    return (f"{at} {event.severity.value.upper()} {event.kind.value} {event.state.value} "
            f"{event.hub_id}/{event.patient_id}{value} tier={event.tier.value} {kind} "
            f"alert={event.alert_id}")


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        password = (getpass.getpass("password: ") if sys.stdin.isatty()
                    else sys.stdin.readline().rstrip("\n"))
        if not password:
            print("hash-password: empty password", file=sys.stderr)
            return EXIT_USAGE
        print(hash_password(password))
        return 0
    if args.config is None:
        print("console: --config is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_console_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    problem = preflight(config)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The access log would name patients (pseudonymously) in URLs: the app writes none
    # (daemon/console/web.py), and tornado's logger stays at WARNING should anything use it.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    try:
        return asyncio.run(watch(config) if args.watch else serve(config))
    except OSError as exc:
        print(f"console: {exc}", file=sys.stderr)
        return 1


def preflight(config: ConsoleConfig) -> str | None:
    """What the config names but the machine lacks, as `path: reason` (before any thread)."""
    try:
        config.mqtt.password()
    except OSError as exc:
        return f"mqtt.password_file: cannot read {config.mqtt.password_file}: {exc.strerror}"
    if config.mqtt.username and config.mqtt.password() is None and config.mqtt.password_env:
        return f"mqtt.password_env: {config.mqtt.password_env} is not set"
    try:
        History(config.console.data_dir / "console.sqlite3").close()
    except (OSError, sqlite3.Error) as exc:
        return f"console.data_dir: cannot open the history in {config.console.data_dir}: {exc}"
    return None


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def watch(config: ConsoleConfig) -> int:
    """Deduplicated by event_id in memory; writes nothing to the console's history."""
    seen: dict[str, None] = {}

    def on_message(message: IncomingMessage) -> None:
        try:
            parsed = parse_message(config.mqtt.topic_prefix, message.topic, message.payload)
        except MalformedMessage as exc:
            print(f"malformed message on {message.topic}: {exc}", file=sys.stderr, flush=True)
            return
        if parsed is None or not isinstance(parsed.model, AlertEvent):
            return
        event = parsed.model
        if event.event_id not in seen:
            seen[event.event_id] = None
            if len(seen) > 100_000:
                del seen[next(iter(seen))]
            print(event_line(event), flush=True)
        send_receipt(event)  # printed: shown (duplicates confirmed again, docs/delivery.md)

    link = console_link(config, on_message, persistent=False)
    send_receipt = receipt_sender(config, link)
    link.start()
    try:
        await _until_signal()
    finally:
        await link.stop()
    return 0


async def serve(config: ConsoleConfig) -> int:
    console = Console(config)
    nurses = NurseLinks(config.mqtt)
    site_web = ConsoleWeb(console, nurses)
    link = console_link(config, console.on_message)
    console.link = link
    console.shown = receipt_sender(config, link)
    link.start()
    server = site_web.http_server()
    sockets = tornado.netutil.bind_sockets(config.console.listen_port,
                                           config.console.listen_host)
    server.add_sockets(sockets)
    # Every address bound (IPv4, IPv6) shares the one port.
    port = sockets[0].getsockname()[1]
    # Tests and the bench read this line to find the port (listen_port = 0 picks a free one).
    print(f"console: listening on http://{config.console.listen_host}:{port}/", flush=True)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(60)
            await site_web.expire_sessions()
            try:
                console.history.prune_vitals(console.clock(),
                                             config.console.vitals_retention_days)
            except Exception:
                log.exception("could not prune old vitals from the history")

    task = asyncio.create_task(housekeeping())
    try:
        await _until_signal()
    finally:
        task.cancel()
        server.stop()
        await server.close_all_connections()
        await nurses.close_all()
        await link.stop()
        console.history.close()
    return 0
