"""The shipped home-broker config (deploy/mosquitto/crs-hub.conf), adapted to a temp dir and a
free loopback port, so that tests and benchmarks run mosquitto with the persistence settings we
ship rather than with a copy of them."""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "crs-hub.conf"
# Lines that only make sense on a real install (Debian paths, TLS files, the LAN listener).
_DROPPED = ("listener", "password_file", "acl_file", "cafile", "certfile", "keyfile",
            "require_certificate", "allow_anonymous")


def shipped_settings(path: Path = SHIPPED) -> list[str]:
    """The shipped file's settings (no comments), minus the install-only ones."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.split()[0] in _DROPPED:
            continue
        lines.append(line)
    return lines


def render(port: int, workdir: Path, *, overrides: dict[str, str] | None = None,
           extra: str = "") -> str:
    """A complete mosquitto.conf: the shipped settings (``overrides`` replaces a setting's
    value, e.g. to compare with another autosave policy), one loopback listener on ``port``,
    persistence files in ``workdir``."""
    overrides = dict(overrides or {})
    out = ["user root"] if os.geteuid() == 0 else []
    for line in shipped_settings():
        key = line.split()[0]
        if key in overrides:
            out.append(f"{key} {overrides.pop(key)}")
        else:
            out.append(line)
    out += [f"{k} {v}" for k, v in overrides.items()]
    out += [f"persistence_location {workdir}/", f"listener {port} 127.0.0.1",
            "allow_anonymous true", "log_type error", "log_type warning", "log_type notice"]
    return "\n".join(out) + "\n" + extra
