"""The uplink: token from auth/getAccessToken, signed form POSTs to /endoscope/<kind>."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from agent.dispatch.outcomes import Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.kit.answers import token_envelope
from agent.uplinks.kit.request import Request, fetch
from agent.uplinks.kit.tokens import Token, TokenError
from agent.uplinks.kit.uplink import HttpPlatformUplink
from agent.uplinks.zhejiang_endoscope import codec
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.fields import lists
from agent.uplinks.zhejiang_endoscope.sign import SCHEMES

AUTH_PATH = "auth/getAccessToken"
AUTH_HEADER = "accessToken"  # auth_where_unlisted = "header"


class ZhejiangEndoscopeUplink(HttpPlatformUplink):
    """Validates each message against the seed's table, then signs and POSTs it as a form."""

    def __init__(
        self,
        name: str,
        config: ZhejiangEndoscopeConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        secret = config.access_secret.get_secret_value()
        # Errors may quote the token URL, whose query holds the secret: reasons hide it.
        super().__init__(name, config, monotonic=monotonic, hide=(secret,))
        self.config = config
        self._clock = clock  # timestamps, message age
        self._signer = SCHEMES[config.sign_scheme]
        self._secret = secret

    async def send(self, message: OutboxMessage) -> Outcome:
        """Check the message against its table (Reject, no request), then sign and POST it."""
        kind = message.kind
        form, problems = codec.build_form(kind, message.payload, self.config)
        if problems:
            return Reject(f"{kind} not sent: {'; '.join(problems)}")

        async def prepare() -> Request:
            headers: dict[str, str] = {}
            if lists(kind, "accessToken") or self.config.auth_where_unlisted == "field":
                form["accessToken"] = await self.tokens.get()
            elif self.config.auth_where_unlisted == "header":
                headers[AUTH_HEADER] = await self.tokens.get()
            self._sign(kind, form)
            return Request("POST", self.config.url(f"endoscope/{kind}"), headers, form)

        answer = await self._exchange(prepare)
        if isinstance(answer, Retry):
            return answer
        age = self._clock() - message.created_at
        return codec.outcome(
            self.config,
            kind,
            form,  # in the seed's fields, whichever shape the message was queued in
            answer.status,
            answer.text,
            age=age,
            retry_after=answer.retry_after,
        )

    def _sign(self, kind: str, form: dict[str, str]) -> None:
        timestamp = str(int(self._clock() * 1000))
        if lists(kind, "timestamp") or self.config.timestamp_everywhere:
            form["timestamp"] = timestamp
        form["sign"] = self._signer(self.config.access_key, self._secret, timestamp, dict(form))

    async def _fetch_token(self, session: aiohttp.ClientSession) -> Token:
        timestamp = str(int(self._clock() * 1000))
        params = {
            "timestamp": timestamp,
            "accessKey": self.config.access_key,
            "accessSecret": self._secret,
        }
        params["sign"] = self._signer(self.config.access_key, self._secret, timestamp, params)
        answer = await fetch(session, Request("GET", self.config.url(AUTH_PATH), params=params))
        envelope = token_envelope(codec.ANSWERS, answer.status, answer.text, AUTH_PATH)
        token, lifetime = codec.parse_token(envelope.data)
        if token is None:
            raise TokenError(f"{AUTH_PATH} answered without a token", unreadable=True)
        return Token(token, lifetime)


def build(name: str, config: ZhejiangEndoscopeConfig) -> ZhejiangEndoscopeUplink:
    """Make the uplink from its validated config."""
    return ZhejiangEndoscopeUplink(name, config)
