"""The config keys of a platform's HTTP connection, which every HTTP uplink's section extends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, HttpUrl

from agent.config import ConfigPath, Seconds, UplinkSection


@dataclass(frozen=True, slots=True)
class Connection:
    """How to talk to one platform over HTTP, whatever its section calls the keys."""

    verify_tls: bool = True
    ca_file: Path | None = None
    timeout: float = 10.0
    max_body: int = 2000  # characters of an answer kept


class HttpConnectionSection(UplinkSection):
    """TLS, timeout and answer cap of an HTTP uplink (its URL keys are its own)."""

    verify_tls: bool = True
    ca_file: ConfigPath | None = None
    request_timeout: Seconds = 10.0
    max_body: Annotated[int, Field(ge=256)] = 2000  # how much of an answer to keep

    def connection(self) -> Connection:
        """These keys as the kit's request functions take them."""
        return Connection(self.verify_tls, self.ca_file, self.request_timeout, self.max_body)

    def token_timing(self) -> tuple[float, float]:
        """(lifetime when the platform states none, refresh margin) of this platform's tokens."""
        return 3600.0, 60.0


class HttpPlatformSection(HttpConnectionSection):
    """An HTTP platform reached under one base URL (its endpoints are paths below it)."""

    base_url: HttpUrl

    def url(self, path: str) -> str:
        """`path` below base_url, however either is slashed."""
        return f"{str(self.base_url).rstrip('/')}/{path.lstrip('/')}"


class TokenPlatformSection(HttpPlatformSection):
    """An HTTP platform whose token lifetime and refresh margin are configured."""

    token_lifetime: Seconds = 7200.0  # used when the token answer states no lifetime
    token_refresh_margin: Annotated[float, Field(ge=0)] = 300.0

    def token_timing(self) -> tuple[float, float]:
        """(token_lifetime, token_refresh_margin)."""
        return self.token_lifetime, self.token_refresh_margin
