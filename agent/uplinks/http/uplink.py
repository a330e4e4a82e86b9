"""POST outbox messages as JSON to one URL; map every answer to a typed outcome."""

from __future__ import annotations

import json

import aiohttp
from pydantic import HttpUrl, SecretStr

from agent.config import Secret
from agent.dispatch.outcomes import Outcome, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.http.forward import ForwardEvents
from agent.uplinks.kit.answers import AnswerRules, judge
from agent.uplinks.kit.config import HttpConnectionSection
from agent.uplinks.kit.request import Request, fetch
from agent.uplinks.kit.tokens import Token, TokenError
from agent.uplinks.kit.uplink import HttpPlatformUplink


class HttpUplinkConfig(HttpConnectionSection):
    """[uplinks.<name>] type = "http" """

    url: HttpUrl
    forward: list[str] = []  # event kinds (glob patterns) to forward
    token_url: HttpUrl | None = None
    client_id: str = ""
    client_secret: Secret | None = None


class HttpUplink(HttpPlatformUplink):
    """A JSON-over-HTTP platform with an optional bearer token."""

    def __init__(self, name: str, config: HttpUplinkConfig) -> None:
        super().__init__(name, config)  # tokens: 3600 s unless stated, renewed 60 s early
        self.config = config
        # Any 2xx is delivered (the body is not read for a code); 401 means the token, if any.
        with_token = frozenset({401}) if config.token_url is not None else frozenset()
        self._answers = AnswerRules(body="none", token_statuses=with_token, token_reason="")

    async def healthcheck(self) -> bool:
        """Whether a token can be had; True for a platform without one."""
        return self.config.token_url is None or await super().healthcheck()

    async def send(self, message: OutboxMessage) -> Outcome:
        """POST the message; 2xx delivered, 401 re-authenticate, 408/429/5xx retry, 4xx reject."""

        async def prepare() -> Request:
            headers = {"Idempotency-Key": message.dedupe_key, "Content-Type": "application/json"}
            if self.config.token_url is not None:
                headers["Authorization"] = f"Bearer {await self.tokens.get()}"
            body = json.dumps(message.payload, ensure_ascii=False).encode()
            return Request("POST", str(self.config.url), headers, body)

        answer = await self._exchange(prepare)
        if isinstance(answer, Retry):
            return answer
        return judge(self._answers, answer.status, answer.text, answer.retry_after)

    async def _fetch_token(self, session: aiohttp.ClientSession) -> Token:
        assert self.config.token_url is not None
        secret = self.config.client_secret or SecretStr("")
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": secret.get_secret_value(),
        }
        answer = await fetch(session, Request("POST", str(self.config.token_url), data=form))
        if answer.status != 200:
            raise TokenError(f"token endpoint answered HTTP {answer.status}")
        try:
            body = json.loads(answer.text)
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without access_token", unreadable=True)
        return Token(token, float(body.get("expires_in", self.config.token_timing()[0])))


def build(name: str, config: HttpUplinkConfig) -> HttpUplink:
    """Make the uplink from its validated config."""
    return HttpUplink(name, config)


def handlers(name: str, config: HttpUplinkConfig) -> list[ForwardEvents]:
    """The forwarding handler this uplink needs, if it forwards any event kinds."""
    if not config.forward:
        return []
    return [ForwardEvents(f"forward:{name}", name, tuple(config.forward))]
