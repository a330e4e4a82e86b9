"""POST outbox messages as JSON to one URL; map every answer to a typed outcome."""

from __future__ import annotations

import json
from typing import Annotated

import aiohttp
from pydantic import Field, HttpUrl, SecretStr

from agent.config import ConfigPath, Seconds, Secret, UplinkSection
from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.http.forward import ForwardEvents
from agent.uplinks.http_session import retry_after_seconds
from agent.uplinks.token_session import TokenError, TokenSessionUplink, usable_for

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


class HttpUplink(TokenSessionUplink):
    """A JSON-over-HTTP platform with an optional bearer token."""

    def __init__(self, name: str, config: HttpUplinkConfig) -> None:
        super().__init__(
            name,
            verify_tls=config.verify_tls,
            ca_file=config.ca_file,
            timeout=config.request_timeout,
        )
        self.config = config

    async def healthcheck(self) -> bool:
        """Whether a token can be had; True for a platform without one."""
        return self.config.token_url is None or await super().healthcheck()

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

    async def _fetch_token(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        assert self.config.token_url is not None
        secret = self.config.client_secret or SecretStr("")
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": secret.get_secret_value(),
        }
        async with session.post(str(self.config.token_url), data=form) as resp:
            if resp.status != 200:
                raise TokenError(f"token endpoint answered HTTP {resp.status}")
            answer = await resp.json(content_type=None)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without access_token")
        return token, usable_for(float(answer.get("expires_in", 3600)), TOKEN_MARGIN)


def build(name: str, config: HttpUplinkConfig) -> HttpUplink:
    """Make the uplink from its validated config."""
    return HttpUplink(name, config)


def handlers(name: str, config: HttpUplinkConfig) -> list[ForwardEvents]:
    """The forwarding handler this uplink needs, if it forwards any event kinds."""
    if not config.forward:
        return []
    return [ForwardEvents(f"forward:{name}", name, tuple(config.forward))]
