"""`crs-hub console` arguments; kept apart so that `crs-hub run` never imports the console's
web pages (tornado handlers, Jinja2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the console's TOML config file")
    parser.add_argument("--watch", action="store_true",
                        help="print alerts as they arrive, one line each (no web page)")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password (stdin or prompt) and print its password_hash")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
