"""The `crs-hub` command line (argparse: the standard library's CLI parser is enough here)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon import __version__

EXIT_USAGE = 2


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # bleak and dbus-fast are chatty at DEBUG and may print addresses; keep them at INFO, and
    # redact MAC addresses from every log line that reaches the handlers.
    for name in ("bleak", "dbus_fast", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from daemon.bluetooth import MacRedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(MacRedactingFilter())


def _load_config_or_exit(path: Path) -> object:
    from daemon.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        sys.exit(EXIT_USAGE)


def cmd_check_config(args: argparse.Namespace) -> int:
    from daemon.config import Config, permission_warnings, profile_warnings
    from daemon.profiles import load_profiles

    # load_config checks everything `run` checks, device profiles included.
    config = _load_config_or_exit(args.file)
    assert isinstance(config, Config)
    warnings = permission_warnings(args.file, config)
    warnings += profile_warnings(config, load_profiles(config.device_profiles_dir))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"ok: hub {config.hub.id}, patient {config.patient.id}, {len(config.devices)} device(s), "
        f"fever >= {config.thresholds.fever.threshold_c} °C, tachycardia > "
        f"{config.thresholds.tachycardia.threshold_bpm:g} bpm for "
        f"{config.thresholds.tachycardia.window_alone_s / 60:g} min "
        f"({config.thresholds.tachycardia.window_s / 60:g} min with a fever), MQTT "
        f"{config.mqtt.host}:{config.mqtt.port} under {config.mqtt.topic_prefix}/"
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from daemon.decoding import DecodeError, decode, describe, normalize_uuid

    try:
        characteristic = normalize_uuid(args.characteristic)
    except ValueError as exc:
        print(f"characteristic {args.characteristic!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = 0
    for text in args.payloads:
        try:
            data = bytes.fromhex(text.replace(":", "").replace(" ", ""))
        except ValueError:
            print(f"{text}: not a hex string", file=sys.stderr)
            status = EXIT_USAGE
            continue
        try:
            result = decode(characteristic, data)
        except DecodeError as exc:
            print(f"{text}: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(json.dumps(describe(result), ensure_ascii=False))
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from daemon.payloads import schema_text

    print(schema_text())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.config import Config
    from daemon.service import run_service

    config = _load_config_or_exit(args.config)
    assert isinstance(config, Config)
    _configure_logging(args.verbose)
    return asyncio.run(run_service(config))


def cmd_scan(args: argparse.Namespace) -> int:
    from daemon.profiles import load_profiles
    from daemon.scan import ScanError, format_scan, scan

    _configure_logging(False)
    profiles = load_profiles(None)
    try:
        results = asyncio.run(scan(args.timeout, args.adapter, profiles))
    except ScanError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_scan(results))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    return asyncio.run(run_demo(json_output=args.json, time_scale=args.time_scale,
                                verbose=args.verbose, scenario_name=args.scenario))


def cmd_replay(args: argparse.Namespace) -> int:
    from daemon.config import Config
    from daemon.payloads import AlertEvent
    from daemon.replay import RecordingError, replay_file, summary_text

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    config = _load_config_or_exit(args.config)
    assert isinstance(config, Config)
    out = sys.stdout

    def print_event(event: AlertEvent) -> None:
        out.write(event.model_dump_json() + "\n")

    try:
        result = replay_file(config, args.recording, tail_s=args.tail, seed=args.seed,
                             skip_bad=args.skip_bad, on_event=print_event)
    except RecordingError as exc:
        print(f"{args.recording}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{args.recording}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    out.flush()
    for problem in result.bad_rows:
        print(f"skipped {problem}", file=sys.stderr)
    print(summary_text(result.summary), file=sys.stderr)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from daemon.console.main import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crs-hub",
        description="Watches temperature and heart rate from Bluetooth wearables after CAR-T or "
        "bispecific therapy and alerts the patient and care team over MQTT when signs of "
        "cytokine release syndrome appear. Not a certified medical device.",
    )
    parser.add_argument("--version", action="version", version=f"crs-hub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the hub daemon")
    run.add_argument("--config", type=Path, required=True, help="the hub's TOML config file")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="debug logging (includes vital signs: do not leave on)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config file and print a summary",
                           description="Exit 0 with a one-line summary, or 2 with one "
                           "'path.to.field: reason' line per problem.")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_check_config)

    dec = sub.add_parser(
        "decode", help="decode captured GATT payloads to JSON",
        description="Decode Bluetooth characteristic payloads (hex) the way the hub does, one "
        "JSON object per payload. Example: crs-hub decode 2a37 16480104 ")
    dec.add_argument("characteristic",
                     help="16-bit id such as 2a37, 2a1c, 2a1e, 2a19, 2a5e, 2a5f, 2a35, or a UUID")
    dec.add_argument("payloads", nargs="+", metavar="HEX")
    dec.set_defaults(func=cmd_decode)

    schema = sub.add_parser("schema", help="print the JSON Schema of every MQTT payload")
    schema.set_defaults(func=cmd_schema)

    scan = sub.add_parser("scan", help="list nearby wearables and the device profile that fits")
    scan.add_argument("--timeout", type=float, default=10.0, help="seconds to scan (default 10)")
    scan.add_argument("--adapter", default=None, help="Bluetooth adapter, e.g. hci0")
    scan.set_defaults(func=cmd_scan)

    replay = sub.add_parser(
        "replay", help="run a recorded CSV through the hub's rules and print its alert events",
        description="Replays a recording (CSV: time,device,kind,value[,sensor_contact]"
        "[,monotonic_s]) through the same monitor the daemon runs, on the recording's own "
        "clock, and prints one alert_event JSON per line; a summary goes to stderr. A malformed "
        "row exits 2 with 'line N: reason' before any event is printed.")
    replay.add_argument("--config", type=Path, required=True, help="the hub's TOML config file")
    replay.add_argument("recording", type=Path)
    replay.add_argument("--tail", type=float, default=0.0, metavar="S",
                        help="seconds of silence to run after the last row (default 0)")
    replay.add_argument("--seed", type=int, default=None,
                        help="make alert and event ids reproducible")
    replay.add_argument("--skip-bad", action="store_true",
                        help="count and report malformed rows instead of exiting 2")
    replay.add_argument("--summary-json", type=Path, default=None, metavar="FILE",
                        help="also write the summary as JSON to FILE")
    replay.set_defaults(func=cmd_replay)

    demo = sub.add_parser(
        "demo", help="run the whole pipeline on simulated wearables (no setup needed)",
        description="Starts a simulated BlueZ with a scenario (--scenario), a broker, and the real "
        "hub pipeline, then prints the alerts a care team would receive.")
    demo.add_argument("--json", action="store_true", help="one JSON alert payload per line")
    demo.add_argument("--scenario", choices=("crs-onset", "hypoxia", "hypotension"),
                      default="crs-onset",
                      help="crs-onset (fever, fast heart rate; default), hypoxia or hypotension "
                      "(the emergency tier: SpO2 or blood pressure, with fever)")
    demo.add_argument("--time-scale", type=float, default=180.0,
                      help="scenario seconds per real second (default 180)")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the hub's log")
    demo.set_defaults(func=cmd_demo)

    from daemon.access_code import add_command as add_access_code_command

    add_access_code_command(sub)

    from daemon.console.arguments import add_arguments as console_arguments

    console = sub.add_parser("console", help="the care team's console (runs at the clinic)",
                             description="A web page for nurses watching many patients, or "
                             "--watch: one line per alert in the terminal.")
    console_arguments(console)
    console.set_defaults(func=cmd_console)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
