"""The IDCAS token chain (3.2.1-3.2.3): client token -> RSA public key -> user token.

The client token is cached on its own (it only unlocks the key); the key is kept until a
password grant is refused (the platform may have rotated it: fetched again, once); the user
token is the uplink's kit TokenCache, shared by the outbox and the synchronous calls.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from Crypto.PublicKey import RSA

from agent.crypto import rsa
from agent.errors import CryptoError
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.kit.answers import AnswerRules, token_envelope
from agent.uplinks.kit.request import Request, fetch
from agent.uplinks.kit.tokens import Token, TokenCache, TokenError

TOKEN_PATH = "connect/token"  # noqa: S105 - a path
KEY_PATH = "api-operate/configurations"
KEY_NAME = "TransmissionSecurity.RSA.PublicKey"
Session = Callable[[], Awaitable[aiohttp.ClientSession]]


class TokenChain:
    """Makes user tokens: `user_token` is the `acquire` of the uplink's TokenCache."""

    def __init__(self, config: IdcasArchiveConfig, session: Session, clock: Callable[[], float]):
        self.config = config
        self._session = session
        self._rules = AnswerRules(delivered_codes=frozenset(config.success_codes))
        self._pinned = config.pinned_key()
        self._key: RSA.RsaKey | None = self._pinned
        self.client = TokenCache(
            self._client_token,
            lifetime=config.client_token_lifetime,
            margin=min(config.token_refresh_margin, 60.0),
            clock=clock,
        )
        self.keys_fetched = 0

    async def user_token(self) -> Token:
        """A user access token (password grant, the password RSA-encrypted); TokenError if not."""
        key = await self._public_key()
        try:
            return await self._password_grant(key)
        except TokenError:
            if self._pinned is not None:
                raise
            self._key = None  # the key may have rotated: fetch it again, once
            return await self._password_grant(await self._public_key())

    async def _client_token(self) -> Token:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.get_secret_value(),
        }
        return await self._grant(form, "client token")

    async def _password_grant(self, key: RSA.RsaKey) -> Token:
        password = self.config.password.get_secret_value()
        form = {
            "grant_type": "password",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.get_secret_value(),
            "username": self.config.username,
            "password": rsa.encrypt_text(key, password, padding=self.config.rsa_padding),
        }
        return await self._grant(form, "user token")

    async def _grant(self, form: dict[str, str], what: str) -> Token:
        url = self.config.auth(TOKEN_PATH)
        answer = await fetch(await self._session(), Request("POST", url, data=form), 4096)
        if answer.status != 200:
            raise TokenError(
                f"{what}: {TOKEN_PATH} answered HTTP {answer.status}{_oauth(answer.text)}"
            )
        body = _json(answer.text)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError(f"{what}: {TOKEN_PATH} answered without access_token", unreadable=True)
        lifetime = body.get("expires_in")
        return Token(token, float(lifetime) if isinstance(lifetime, int | float) else None)

    async def _public_key(self) -> RSA.RsaKey:
        if self._key is not None:
            return self._key
        client = await self.client.get()
        answer = await self._fetch_key(client)
        if answer[0] == 401:  # the client token expired early: a new one, once
            self.client.invalidate(client)
            answer = await self._fetch_key(await self.client.renew())
        status, text = answer
        env = token_envelope(self._rules, status, text, KEY_PATH)
        if not isinstance(env.data, str):
            raise TokenError(f"{KEY_PATH} answered no key in data", unreadable=True)
        try:
            key = rsa.load_key(env.data, "the platform's RSA key")
        except CryptoError as err:
            raise TokenError(f"{KEY_PATH}: {err.reason}") from err
        self._key = key
        self.keys_fetched += 1
        return key

    async def _fetch_key(self, client_token: str) -> tuple[int, str]:
        request = Request(
            "GET",
            self.config.gateway(KEY_PATH),
            headers={"Authorization": f"bearer {client_token}"},
            params={"key": KEY_NAME},
        )
        answer = await fetch(await self._session(), request, 16384)
        return answer.status, answer.text


def _json(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _oauth(text: str) -> str:
    """`: invalid_grant` out of an OAuth2 error answer (never the request's values)."""
    error = _json(text).get("error")
    return f": {error}" if isinstance(error, str) and error.isascii() and len(error) < 64 else ""
