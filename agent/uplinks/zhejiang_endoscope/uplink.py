"""The uplink: token from auth/getAccessToken, signed form POSTs to /endoscope/<kind>."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from agent.dispatch.outcomes import Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.http_session import retry_after_seconds
from agent.uplinks.token_session import TokenError, TokenSessionUplink, usable_for
from agent.uplinks.zhejiang_endoscope import codec
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.fields import lists
from agent.uplinks.zhejiang_endoscope.sign import SCHEMES

AUTH_PATH = "auth/getAccessToken"
AUTH_HEADER = "accessToken"  # auth_where_unlisted = "header"


class ZhejiangEndoscopeUplink(TokenSessionUplink):
    """Validates each message against the seed's table, then signs and POSTs it as a form."""

    def __init__(
        self,
        name: str,
        config: ZhejiangEndoscopeConfig,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            name,
            verify_tls=config.verify_tls,
            ca_file=config.ca_file,
            timeout=config.request_timeout,
            monotonic=monotonic,
        )
        self.config = config
        self._clock = clock  # timestamps, message age
        self._signer = SCHEMES[config.sign_scheme]
        self._base = str(config.base_url).rstrip("/")
        self._secret = config.access_secret.get_secret_value()

    async def send(self, message: OutboxMessage) -> Outcome:
        """Check the message against its table (Reject, no request), then sign and POST it."""
        assert self._session is not None, "open() first"
        kind = message.kind
        form, problems = codec.build_form(kind, message.payload, self.config)
        if problems:
            return Reject(f"{kind} not sent: {'; '.join(problems)}")
        headers: dict[str, str] = {}
        try:
            if lists(kind, "accessToken") or self.config.auth_where_unlisted == "field":
                form["accessToken"] = await self._ensure_token()
            elif self.config.auth_where_unlisted == "header":
                headers[AUTH_HEADER] = await self._ensure_token()
            self._sign(kind, form)
            url = f"{self._base}/endoscope/{kind}"
            async with self._session.post(url, data=form, headers=headers) as resp:
                text = (await resp.text(errors="replace"))[: self.config.max_body]
                status, retry_after = resp.status, retry_after_seconds(resp)
        except TokenError as err:
            return Retry(self._scrub(str(err)))
        except TimeoutError:
            return Retry(f"no answer within request_timeout {self.config.request_timeout:g} s")
        except (aiohttp.ClientError, OSError) as err:
            return Retry(self._scrub(f"{type(err).__name__}: {err}".rstrip(": ")))
        age = self._clock() - message.created_at
        return codec.outcome(
            self.config, kind, message.payload, status, text, age=age, retry_after=retry_after
        )

    def _sign(self, kind: str, form: dict[str, str]) -> None:
        timestamp = str(int(self._clock() * 1000))
        if lists(kind, "timestamp") or self.config.timestamp_everywhere:
            form["timestamp"] = timestamp
        form["sign"] = self._signer(self.config.access_key, self._secret, timestamp, dict(form))

    async def _fetch_token(self, session: aiohttp.ClientSession) -> tuple[str, float]:
        timestamp = str(int(self._clock() * 1000))
        params = {
            "timestamp": timestamp,
            "accessKey": self.config.access_key,
            "accessSecret": self._secret,
        }
        params["sign"] = self._signer(self.config.access_key, self._secret, timestamp, params)
        async with session.get(f"{self._base}/{AUTH_PATH}", params=params) as resp:
            text = await resp.text(errors="replace")
            if resp.status != 200:
                raise TokenError(f"{AUTH_PATH} answered HTTP {resp.status}")
        code, msg, data = codec.parse_answer(text)
        if code != 200:
            raise TokenError(f"{AUTH_PATH} answered code {code}: {msg}")
        token, lifetime = codec.parse_token(data)
        if token is None:
            raise TokenError(f"{AUTH_PATH} answered without a token")
        lifetime = lifetime or self.config.token_lifetime
        return token, usable_for(lifetime, self.config.token_refresh_margin)

    def _scrub(self, text: str) -> str:
        """Errors may quote the token URL, whose query holds the secret."""
        return text.replace(self._secret, "***") if self._secret else text


def build(name: str, config: ZhejiangEndoscopeConfig) -> ZhejiangEndoscopeUplink:
    """Make the uplink from its validated config."""
    return ZhejiangEndoscopeUplink(name, config)
