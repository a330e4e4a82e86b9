"""The config table of a platform listener: the HTTP port a platform (or the hospital's PACS/HIS)
calls on the agent, apart from the loopback local API; a plugin embeds it as `listener`."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated

from pydantic import Field, model_validator

from agent.config import MIN_TOKEN_LENGTH, ConfigPath, Secret, Section, too_short

AddressRange = IPv4Network | IPv6Network


class PlatformListener(Section):
    """[uplinks.NAME.listener] (or any plugin's `listener` table): off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"  # the address to bind: e.g. the hospital-side NIC, or 0.0.0.0
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # required (non-zero) when enabled
    # Client address ranges (CIDR, IPv4 and IPv6) allowed to connect; required when enabled:
    # an empty list is a config error, not "everyone" (write 0.0.0.0/0 and ::/0 to mean that).
    allow: list[AddressRange] = []
    token: Secret | None = None  # when set, every request carries `Authorization: Bearer <token>`
    max_body: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    tls_cert: ConfigPath | None = None  # PEM certificate (chain) and its key: serve HTTPS
    tls_key: ConfigPath | None = None

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> PlatformListener:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if too_short(self.token):
            raise ValueError(f"token is too short: at least {MIN_TOKEN_LENGTH} characters")
        if not self.enabled:
            return self
        if self.port == 0:
            raise ValueError("port is required when the listener is enabled")
        if not self.allow:
            raise ValueError(
                "allow is required when the listener is enabled: the client address ranges"
                ' (CIDR) that may connect, e.g. ["10.1.2.0/24"]'
            )
        return self

    def allows(self, address: str | None) -> bool:
        """Whether a client at `address` (as the socket reports it) is in an allowed range."""
        client = client_address(address)
        return client is not None and any(client in network for network in self.allow)


def client_address(text: str | None) -> IPv4Address | IPv6Address | None:
    """The address a socket reports, an IPv4-mapped IPv6 one as IPv4; None if not an address."""
    if text is None:
        return None
    try:
        address = ip_address(text.split("%", 1)[0])  # a link-local zone id is no part of it
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
