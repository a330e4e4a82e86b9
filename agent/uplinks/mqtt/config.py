"""[uplinks.<name>] type = "mqtt": broker URL, topic prefix, credentials, TLS, retain policy."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from agent.config import ConfigPath, Seconds, Secret, UplinkSection
from agent.uplinks.mqtt.connection import Broker, existing_file, parse_broker_url
from agent.uplinks.mqtt.topics import check_topic_prefix


def _broker_url(value: str) -> str:
    parse_broker_url(value)
    return value


def _kind(value: str) -> str:
    if not value or any(c in value for c in "+#/\0"):
        raise ValueError(f"not a message kind: {value!r}")
    return value


class MqttUplinkConfig(UplinkSection):
    """[uplinks.<name>] type = "mqtt" """

    url: Annotated[str, AfterValidator(_broker_url)]
    topic_prefix: Annotated[str, AfterValidator(check_topic_prefix)]
    client_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    username: Annotated[str, Field(min_length=1)] | None = None
    password: Secret | None = None
    ca_file: Annotated[ConfigPath, AfterValidator(existing_file)] | None = None
    tls_verify: bool = True
    keepalive: Annotated[int, Field(ge=5, le=65535)] = 60
    retain_kinds: list[Annotated[str, AfterValidator(_kind)]] = ["health", "scope.state"]
    connect_timeout: Seconds = 10.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if (self.ca_file is not None or not self.tls_verify) and not self.broker.tls:
            raise ValueError("ca_file and tls_verify need an mqtts:// url")
        return self

    @property
    def broker(self) -> Broker:
        """Where the broker is and whether to speak TLS to it."""
        return parse_broker_url(self.url)
