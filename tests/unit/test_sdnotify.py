"""sd_notify datagrams, including Linux abstract socket names."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from agent.sdnotify import Notifier

if sys.platform == "win32":
    pytest.skip("systemd's notify protocol: Linux only", allow_module_level=True)


def test_notify_sends_datagram_to_abstract_socket():
    name = f"edge-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1", "STATUS=ok")
        assert server.recv(100) == b"READY=1\nSTATUS=ok"


def test_watchdog_interval_is_half_of_watchdog_usec():
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier(env).watchdog_interval == 15.0
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None  # not for us
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None


def test_without_notify_socket_nothing_happens():
    Notifier({}).notify("READY=1")  # must not raise
