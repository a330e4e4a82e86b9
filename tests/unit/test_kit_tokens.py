"""The token cache: lifetime and margin on an injected clock, single-flight, multi-step."""

from __future__ import annotations

import asyncio

import pytest

from agent.uplinks.kit.tokens import Token, TokenCache, TokenError, usable_for


class Issuer:
    """A token endpoint that counts its calls; `gate` holds them until released."""

    def __init__(self, lifetime: float | None = None) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail = False

    async def __call__(self) -> Token:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise TokenError("refused")
        return Token(f"t{self.calls}", self.lifetime)


def cache(issuer: Issuer, now: list[float], margin: float = 10.0) -> TokenCache:
    """A cache over `issuer` whose clock reads now[0]."""
    return TokenCache(issuer, lifetime=100.0, margin=margin, clock=lambda: now[0])


async def test_a_token_is_reused_until_the_margin_before_its_lifetime() -> None:
    issuer, now = Issuer(), [0.0]
    tokens = cache(issuer, now)
    assert await tokens.get() == "t1"
    now[0] = 89.9
    assert await tokens.get() == "t1"
    now[0] = 90.0  # 100 s lifetime, renewed 10 s early
    assert await tokens.get() == "t2"


async def test_the_platforms_stated_lifetime_wins_and_the_margin_stops_half_way() -> None:
    issuer, now = Issuer(lifetime=30.0), [0.0]
    tokens = cache(issuer, now, margin=300.0)
    await tokens.get()
    now[0] = 14.9
    assert await tokens.get() == "t1"
    now[0] = 15.0
    assert await tokens.get() == "t2"
    assert usable_for(30.0, 300.0) == 15.0


async def test_many_callers_share_one_acquisition() -> None:
    issuer, now = Issuer(), [0.0]
    issuer.gate.clear()
    tokens = cache(issuer, now)
    waiting = [asyncio.create_task(tokens.get()) for _ in range(20)]
    await issuer.entered.wait()  # the others queue behind the first while it is held
    issuer.gate.set()
    assert set(await asyncio.gather(*waiting)) == {"t1"}
    assert issuer.calls == 1


async def test_concurrent_renewals_after_a_refusal_fetch_once() -> None:
    issuer, now = Issuer(), [0.0]
    tokens = cache(issuer, now)
    await tokens.get()
    issuer.gate.clear()
    issuer.entered.clear()
    renewals = [asyncio.create_task(tokens.renew()) for _ in range(5)]
    await issuer.entered.wait()
    issuer.gate.set()
    assert set(await asyncio.gather(*renewals)) == {"t2"}
    assert issuer.calls == 2


async def test_invalidate_forgets_only_the_token_that_was_refused() -> None:
    issuer, now = Issuer(), [0.0]
    tokens = cache(issuer, now)
    await tokens.get()
    tokens.invalidate("t0")  # an older token: the cached one stays
    assert await tokens.get() == "t1"
    tokens.invalidate("t1")
    assert await tokens.get() == "t2"


async def test_a_failed_acquisition_leaves_no_token_and_the_next_call_tries_again() -> None:
    issuer, now = Issuer(), [0.0]
    tokens = cache(issuer, now)
    await tokens.get()
    issuer.fail = True
    with pytest.raises(TokenError):
        await tokens.renew()
    issuer.fail = False
    assert await tokens.get() == "t3"


async def test_acquisition_may_chain_steps_each_cached_for_its_own_lifetime() -> None:
    now = [0.0]
    steps: list[str] = []

    async def client_token() -> Token:
        steps.append("client")
        return Token("c", 1000.0)

    async def public_key() -> Token:
        steps.append(f"key with {await client.get()}")
        return Token("k", 1000.0)

    async def password_grant() -> Token:
        steps.append(f"grant with {await key.get()}")
        return Token("user", 50.0)

    client = TokenCache(client_token, lifetime=1000.0, margin=0.0, clock=lambda: now[0])
    key = TokenCache(public_key, lifetime=1000.0, margin=0.0, clock=lambda: now[0])
    user = TokenCache(password_grant, lifetime=50.0, margin=0.0, clock=lambda: now[0])
    assert await user.get() == "user"
    now[0] = 60.0
    assert await user.get() == "user"
    assert steps == ["client", "key with c", "grant with k", "grant with k"]
