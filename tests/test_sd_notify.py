"""daemon.sd_notify against real AF_UNIX datagram sockets standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.sd_notify import Notifier


def _receive(sock: socket.socket) -> bytes:
    sock.settimeout(2)
    return sock.recv(4096)


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield str(path), sock
    finally:
        sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"crs-hub-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def test_messages_arrive_with_exact_bytes_on_a_path_socket(
    path_socket: tuple[str, socket.socket],
) -> None:
    address, server = path_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.enabled

    notifier.ready("2/2 wearables connected, MQTT up")
    assert _receive(server) == b"READY=1\nSTATUS=2/2 wearables connected, MQTT up"
    notifier.status("reconnecting chest-strap")
    assert _receive(server) == b"STATUS=reconnecting chest-strap"
    notifier.watchdog()
    assert _receive(server) == b"WATCHDOG=1"
    notifier.extend_timeout(1.5)
    assert _receive(server) == b"EXTEND_TIMEOUT_USEC=1500000"
    notifier.stopping()
    assert _receive(server) == b"STOPPING=1"
    notifier.close()


def test_abstract_namespace_socket_from_at_prefix(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, server = abstract_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    notifier.ready("ready")
    assert _receive(server) == b"READY=1\nSTATUS=ready"
    notifier.watchdog()
    assert _receive(server) == b"WATCHDOG=1"
    notifier.close()


def test_status_newlines_cannot_inject_assignments(path_socket: tuple[str, socket.socket]) -> None:
    address, server = path_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    notifier.status("line one\nREADY=1\r\nline two")
    assert _receive(server) == b"STATUS=line one READY=1 line two"
    notifier.close()


def test_without_notify_socket_everything_is_a_noop() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_unsupported_socket_address_disables_notifications(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="daemon.sd_notify"):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "not a unix socket address" in caplog.text


def test_send_failure_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="daemon.sd_notify"):
        for _ in range(3):
            notifier.watchdog()
        assert notifier.notify("WATCHDOG=1") is False
    warnings = [r for r in caplog.records if r.name == "daemon.sd_notify"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()
    notifier.close()


def test_recovers_after_the_socket_appears(tmp_path: Path) -> None:
    path = tmp_path / "late"
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier.notify("WATCHDOG=1") is False
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        assert notifier.notify("WATCHDOG=1") is True
        assert _receive(server) == b"WATCHDOG=1"
    finally:
        server.close()
        notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # someone else's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert Notifier.from_env(env).watchdog_interval() == expected


def test_from_env_reads_os_environ(
    monkeypatch: pytest.MonkeyPatch, path_socket: tuple[str, socket.socket]
) -> None:
    address, server = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.watchdog_interval() == 1.0
    notifier.watchdog()
    assert _receive(server) == b"WATCHDOG=1"
    notifier.close()
