"""MQTT uplink config validation and the message-to-publication mapping (no broker)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.journal.outbox import OutboxMessage
from agent.uplinks.mqtt.config import MqttUplinkConfig
from agent.uplinks.mqtt.connection import Broker
from agent.uplinks.mqtt.topics import Publication, UnpublishableError, encode
from agent.uplinks.mqtt.uplink import build

PREFIX = "edge-agent/ward3"


def config(**overrides: Any) -> MqttUplinkConfig:
    fields: dict[str, Any] = {
        "type": "mqtt",
        "url": "mqtt://broker.hospital.local",
        "topic_prefix": PREFIX,
        **overrides,
    }
    return MqttUplinkConfig.model_validate(fields)


def test_defaults() -> None:
    made = config()
    assert made.broker == Broker("broker.hospital.local", 1883, tls=False)
    assert made.retain_kinds == ["health", "scope.state"]
    assert (made.keepalive, made.connect_timeout, made.tls_verify) == (60, 10.0, True)
    assert made.client_id is None and made.username is None and made.password is None
    uplink = build("hospital_mqtt", made)
    assert uplink.client_id == f"edge-agent-{socket.gethostname()}-uplink-hospital_mqtt"
    assert build("x", config(client_id="ward3-bus")).client_id == "ward3-bus"


@pytest.mark.parametrize(
    ("url", "broker"),
    [
        ("mqtt://10.0.0.5", Broker("10.0.0.5", 1883, tls=False)),
        ("mqtts://broker.example", Broker("broker.example", 8883, tls=True)),
        ("MQTTS://broker.example:8884/", Broker("broker.example", 8884, tls=True)),
        ("mqtt://[::1]:1884", Broker("::1", 1884, tls=False)),
    ],
)
def test_broker_urls(url: str, broker: Broker) -> None:
    assert config(url=url).broker == broker
    assert str(broker).startswith(("mqtt://", "mqtts://"))


def test_tls_options_and_credentials(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here", encoding="utf-8")
    made = config(url="mqtts://b", ca_file=str(ca), username="agent", password="s3cret")
    assert made.ca_file == ca
    assert made.password is not None and made.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(made)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://broker"}, "must be mqtt://host"),
        ({"url": "tcp://broker:1883"}, "must be mqtt://host"),
        ({"url": "mqtt://agent:pw@broker"}, "credentials do not belong in the url"),
        ({"url": "mqtt://broker/topic"}, "without a path or query"),
        ({"url": "mqtt://broker?x=1"}, "without a path or query"),
        ({"url": "mqtt://:1883"}, "names no host"),
        ({"url": "mqtt://broker:99999"}, "invalid port"),
        ({"url": "mqtt://broker:0"}, "invalid port"),
        ({"topic_prefix": ""}, "is empty"),
        ({"topic_prefix": "edge-agent/+/x"}, "contains a wildcard"),
        ({"topic_prefix": "edge-agent/#"}, "contains a wildcard"),
        ({"topic_prefix": "edge-agent/ward3/"}, "empty level"),
        ({"topic_prefix": "/edge-agent"}, "empty level"),
        ({"topic_prefix": "a//b"}, "empty level"),
        ({"topic_prefix": "$SYS/edge"}, "starts with \\$"),
        ({"topic_prefix": "a\0b"}, "NUL"),
        ({"password": "pw"}, "password needs username"),
        ({"ca_file": "/nonexistent/ca.pem", "url": "mqtts://b"}, "is not a readable file"),
        ({"tls_verify": False}, "need an mqtts:// url"),
        ({"keepalive": 2}, "greater than or equal to 5"),
        ({"connect_timeout": 0}, "greater than 0"),
        ({"retain_kinds": ["scope/state"]}, "not a message kind"),
        ({"retain_kinds": [""]}, "not a message kind"),
        ({"client_id": ""}, "at least 1 character"),
        ({"qos": 0}, "Extra inputs"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**overrides)


def test_required_keys() -> None:
    with pytest.raises(ValidationError) as caught:
        MqttUplinkConfig.model_validate({"type": "mqtt"})
    assert {e["loc"][0] for e in caught.value.errors()} == {"url", "topic_prefix"}


def test_url_errors_never_echo_a_password() -> None:
    with pytest.raises(ValidationError) as caught:
        config(url="mqtt://agent:hunter2@broker")
    assert "hunter2" not in "".join(e["msg"] for e in caught.value.errors())


def message(kind: str, payload: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(1, "bus", kind, "k", "d", payload, 1, 0.0, None)


RETAIN = frozenset({"health", "scope.state"})


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        ("health", {"ok": True}, Publication(f"{PREFIX}/health", b'{"ok":true}', True)),
        (
            "scope.state",
            {"state": "ready", "topic_suffix": "3"},
            Publication(f"{PREFIX}/scope/state/3", b'{"state":"ready"}', True),
        ),
        (
            "scope.state",
            {"topic_suffix": 12},
            Publication(f"{PREFIX}/scope/state/12", b"{}", True),
        ),
        (
            "alert",
            {"severity": "critical", "message": "未清洗", "topic_suffix": "critical"},
            Publication(
                f"{PREFIX}/alert/critical",
                '{"severity":"critical","message":"未清洗"}'.encode(),
                False,
            ),
        ),
        ("rfid.read", {"a": [1, 2]}, Publication(f"{PREFIX}/rfid/read", b'{"a":[1,2]}', False)),
        ("x", {"topic_suffix": "a/$b"}, Publication(f"{PREFIX}/x/a/$b", b"{}", False)),
    ],
)
def test_encode(kind: str, payload: dict[str, Any], expected: Publication) -> None:
    original = dict(payload)
    assert encode(message(kind, payload), PREFIX, RETAIN) == expected
    assert payload == original  # the journal's copy keeps its topic_suffix


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("x", {"topic_suffix": ""}, "topic_suffix '' is empty"),
        ("x", {"topic_suffix": "a/#"}, "contains a wildcard"),
        ("x", {"topic_suffix": "+"}, "contains a wildcard"),
        ("x", {"topic_suffix": "a/"}, "empty level"),
        ("x", {"topic_suffix": "/a"}, "empty level"),
        ("x", {"topic_suffix": None}, "must be a string, not NoneType"),
        ("x", {"topic_suffix": True}, "must be a string, not bool"),
        ("x", {"topic_suffix": "a" * 70_000}, "longer than 65535 bytes"),
        ("x", {"text": "\udc80"}, "not encodable as UTF-8"),
        ("a..b", {}, "kind 'a..b' has an empty level"),
        ("", {}, "kind '' is empty"),
        ("a#", {}, "contains a wildcard"),
    ],
)
def test_unpublishable(kind: str, payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(UnpublishableError, match=reason):
        encode(message(kind, payload), PREFIX, RETAIN)
