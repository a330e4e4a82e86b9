"""POST outbox messages as JSON to one URL; map every answer to a typed outcome."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import aiohttp
from pydantic import Field, HttpUrl, SecretStr

from agent.config import ConfigPath, Seconds, Secret, UplinkSection
from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.errors import AgentError
from agent.journal.outbox import OutboxMessage
from agent.uplinks.base import Uplink
from agent.uplinks.http.forward import ForwardEvents
from agent.uplinks.http_session import client_session, retry_after_seconds

TRANSIENT_STATUSES = frozenset({408, 425, 429})
TOKEN_MARGIN = 60.0  # refresh this long before the platform's stated expiry


class HttpUplinkConfig(UplinkSection):
    """[uplinks.<name>] type = "http" """

    url: HttpUrl
    forward: list[str] = []  # event kinds (glob patterns) to forward
    token_url: HttpUrl | None = None
    client_id: str = ""
    client_secret: Secret | None = None
    verify_tls: bool = True
    ca_file: ConfigPath | None = None
    request_timeout: Seconds = 10.0
    max_body: Annotated[int, Field(ge=256)] = 2000  # how much of an answer to keep


class TokenError(AgentError):
    """The token endpoint did not give us a token."""


class HttpUplink(Uplink):
    """A JSON-over-HTTP platform with an optional bearer token."""

    def __init__(self, name: str, config: HttpUplinkConfig) -> None:
        super().__init__(name)
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the HTTP session (no connection is made yet)."""
        self._session = client_session(
            verify_tls=self.config.verify_tls,
            ca_file=self.config.ca_file,
            timeout=self.config.request_timeout,
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self) -> None:
        """Fetch a new token now, whatever the cached one's expiry."""
        self._token = None
        await self._ensure_token()

    async def send(self, message: OutboxMessage) -> Outcome:
        """POST the message; 2xx delivered, 401 re-authenticate, 408/429/5xx retry, 4xx reject."""
        assert self._session is not None, "open() first"
        headers = {"Idempotency-Key": message.dedupe_key, "Content-Type": "application/json"}
        try:
            if self.config.token_url is not None:
                headers["Authorization"] = f"Bearer {await self._ensure_token()}"
            body = json.dumps(message.payload, ensure_ascii=False).encode()
            async with self._session.post(str(self.config.url), data=body, headers=headers) as resp:
                text = (await resp.text(errors="replace"))[: self.config.max_body]
                return self._outcome(resp, text)
        except TokenError as err:
            return Retry(str(err))
        except TimeoutError:
            return Retry(f"no answer within request_timeout {self.config.request_timeout:g} s")
        except (aiohttp.ClientError, OSError) as err:
            return Retry(f"{type(err).__name__}: {err}".rstrip(": "))

    def _outcome(self, resp: aiohttp.ClientResponse, text: str) -> Outcome:
        status = resp.status
        if 200 <= status < 300:
            return Delivered(text)
        reason = f"HTTP {status}: {text}".rstrip(": ")
        if status == 401 and self.config.token_url is not None:
            return Retry(reason, after=0.0, response=text, reauthenticate=True)
        if status in TRANSIENT_STATUSES or status >= 500:
            return Retry(reason, after=retry_after_seconds(resp), response=text)
        return Reject(reason, response=text)

    async def _ensure_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            assert self._session is not None and self.config.token_url is not None
            secret = self.config.client_secret or SecretStr("")
            form = {
                "grant_type": "client_credentials",
                "client_id": self.config.client_id,
                "client_secret": secret.get_secret_value(),
            }
            async with self._session.post(str(self.config.token_url), data=form) as resp:
                if resp.status != 200:
                    raise TokenError(f"token endpoint answered HTTP {resp.status}")
                answer = await resp.json(content_type=None)
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise TokenError("token endpoint answered without access_token")
            lifetime = float(answer.get("expires_in", 3600))
            self._token = token
            self._token_expires = time.monotonic() + max(lifetime - TOKEN_MARGIN, lifetime / 2)
            return token


def build(name: str, config: HttpUplinkConfig) -> HttpUplink:
    """Make the uplink from its validated config."""
    return HttpUplink(name, config)


def handlers(name: str, config: HttpUplinkConfig) -> list[ForwardEvents]:
    """The forwarding handler this uplink needs, if it forwards any event kinds."""
    if not config.forward:
        return []
    return [ForwardEvents(f"forward:{name}", name, tuple(config.forward))]
