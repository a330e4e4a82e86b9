"""A platform listener's settings (what check-config refuses) and its rate-limited refusal log."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.listener_config import PlatformListener
from agent.web.listener import RefusalLog


def settings(**keys: Any) -> PlatformListener:
    return PlatformListener.model_validate({"enabled": True, "port": 8443, **keys})


def test_off_by_default_and_needs_nothing_while_off():
    assert PlatformListener().enabled is False
    assert PlatformListener(port=0).allow == []


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ({"allow": []}, "allow is required when the listener is enabled"),
        ({"allow": ["10.0.0.0/8"], "port": 0}, "port is required when the listener is enabled"),
        ({"allow": ["10.0.0.1/8"]}, "valid IPv4 network"),  # host bits set: a typo, most likely
        ({"allow": ["10.0.0.0/8"], "tls_cert": "server.pem"}, "tls_cert and tls_key go together"),
        ({"allow": ["10.0.0.0/8"], "token": "short"}, "token is too short"),
    ],
)
def test_an_incomplete_enabled_listener_is_refused(keys, reason):
    with pytest.raises(ValidationError, match=reason):
        settings(**keys)


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (["10.1.2.0/24"], "10.1.2.77", True),
        (["10.1.2.0/24"], "10.1.3.1", False),
        (["10.1.2.0/24"], "::ffff:10.1.2.77", True),  # a dual-stack socket's IPv4 client
        (["fd00:1::/64"], "fd00:1::5", True),
        (["fd00:1::/64"], "10.1.2.77", False),
        (["0.0.0.0/0", "::/0"], "2001:db8::1", True),
        (["10.1.2.0/24"], None, False),  # a Unix socket, or a peer already gone
        (["10.1.2.0/24"], "not an address", False),
    ],
)
def test_allows_by_cidr_range(allow, address, allowed):
    assert settings(allow=allow).allows(address) is allowed


def test_refusals_are_logged_once_per_source_and_reason_per_window():
    now = [1000.0]
    refusals = RefusalLog("platform", window=60.0, clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(5):
            refusals.refused("10.9.9.9", "token", 401, "/notices")
        refusals.refused("10.9.9.9", "address", 403, "/notices")
        refusals.refused("10.9.9.8", "token", 401, "/notices")
        now[0] += 61
        refusals.refused("10.9.9.9", "token", 401, "/notices\n forged line")
    assert [(line["remote"], line["reason"], line["held_back"], line["path"]) for line in logs] == [
        ("10.9.9.9", "token", 0, "/notices"),
        ("10.9.9.9", "address", 0, "/notices"),
        ("10.9.9.8", "token", 0, "/notices"),
        ("10.9.9.9", "token", 4, "/notices\\n forged line"),  # escaped: one line, not two
    ]
