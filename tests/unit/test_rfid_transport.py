"""Device URLs and reconnect backoff (the I/O itself is tested in tests/integration)."""

from __future__ import annotations

import random

import pytest

from drivers.transport import Backoff, SerialEndpoint, TcpEndpoint, parse_url


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("serial:///dev/ttyUSB0", SerialEndpoint("/dev/ttyUSB0")),
        (
            "serial:///dev/ttyS1?baud=115200&parity=e&bytesize=7&stopbits=2",
            SerialEndpoint("/dev/ttyS1", 115200, "E", 7, 2.0),
        ),
        ("serial:///dev/ttyUSB0?stopbits=1.5", SerialEndpoint("/dev/ttyUSB0", stopbits=1.5)),
        ("serial://COM3?baud=9600", SerialEndpoint("COM3")),
        ("tcp://10.0.0.5:6000", TcpEndpoint("10.0.0.5", 6000)),
        ("tcp://reader-3.ward:4001", TcpEndpoint("reader-3.ward", 4001)),
        ("tcp-listen://0.0.0.0:6001", TcpEndpoint("0.0.0.0", 6001, listen=True)),
        ("tcp://[::1]:6000", TcpEndpoint("::1", 6000)),
    ],
)
def test_parse_url(url, endpoint):
    assert parse_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/dev/ttyUSB0", "must start with"),
        ("serial://", "needs a device"),
        ("serial:///dev/ttyUSB0?baud=fast", "numbers"),
        ("serial:///dev/ttyUSB0?baud=0", "positive"),
        ("serial:///dev/ttyUSB0?parity=X", "parity"),
        ("serial:///dev/ttyUSB0?bytesize=9", "bytesize"),
        ("serial:///dev/ttyUSB0?stopbits=3", "stopbits"),
        ("serial:///dev/ttyUSB0?speed=9600", "unknown serial option"),
        ("tcp://10.0.0.5", "host:port"),
        ("tcp://10.0.0.5:99999", "invalid port"),
        ("tcp://10.0.0.5:6000/x", "only host:port"),
    ],
)
def test_parse_url_errors(url, reason):
    with pytest.raises(ValueError, match=reason):
        parse_url(url)


def test_backoff_is_capped_exponential_with_jitter():
    backoff = Backoff(1.0, 30.0)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (5000, 30.0)]:
        delays = {backoff.delay(attempts, rng) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1
