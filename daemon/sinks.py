"""Sinks: where the monitor's outputs go. Events flow one way, monitor -> shell -> every sink.

The durable MQTT outbox (daemon/outbox_sink.py) is one sink; the hub's own annunciator and the
patient's status page are others, each its own module. A new sink never changes the monitor:
the shell (daemon/hub.py) hands each non-empty output to every registered sink, in order, with the
open-alert snapshot as it stands after that output.
"""

from __future__ import annotations

from typing import Protocol

from daemon.monitor import MonitorOutput
from daemon.payloads import AlertStateSnapshot


class Sink(Protocol):
    def on_output(self, out: MonitorOutput, snapshot: AlertStateSnapshot) -> None:
        """Take one output of the monitor. Must not raise for ordinary problems: log them (the
        shell still isolates a failing sink so it cannot stop the others)."""
