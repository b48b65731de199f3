"""Sinks: where the monitor's outputs go. Events flow one way, monitor -> shell -> every sink.

The durable MQTT outbox (daemon/outbox_sink.py) is one sink; the hub's own annunciator and the
patient's status page are others, each its own module. A new sink never changes the monitor:
the shell (daemon/hub.py) hands each non-empty output to every registered sink, in order, with the
open-alert snapshot as it stands after that output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from daemon.monitor import MonitorOutput
from daemon.payloads import AlertEvent, AlertStateSnapshot


class Sink(Protocol):
    def on_output(self, out: MonitorOutput, snapshot: AlertStateSnapshot) -> None:
        """Take one output of the monitor. Must not raise for ordinary problems: log them (the
        shell still isolates a failing sink so it cannot stop the others)."""


class EventCallback:
    """A sink that calls ``fn`` with every alert event (benchmarks time the path with it)."""

    def __init__(self, fn: Callable[[AlertEvent], None]) -> None:
        self._fn = fn

    def on_output(self, out: MonitorOutput, snapshot: AlertStateSnapshot) -> None:
        for event in out.events:
            self._fn(event)
