"""Retry policy: capped exponential backoff with full jitter, and the circuit breaker."""

from __future__ import annotations

import random

import pytest

from agent.dispatch.policy import Backoff, Breaker, BreakerState


def test_backoff_ceiling_doubles_per_attempt_then_caps():
    backoff = Backoff(base=0.5, cap=10.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.ceiling(0) == 0.5  # a never-attempted message waits at most the base


def test_backoff_ceiling_stays_capped_after_days_of_retrying():
    # "Retry forever": at the 300 s cap, ~1025 attempts is a 3.5-day outage, and 2.0**1024
    # no longer fits a float.
    backoff = Backoff(base=1.0, cap=300.0)
    assert backoff.ceiling(1025) == 300.0
    assert backoff.ceiling(10**6) == 300.0
    assert 0.0 <= backoff.delay(10**6, random.Random(1)) <= 300.0


@pytest.mark.parametrize("attempts", [1, 2, 3, 6, 12])
def test_backoff_delay_is_full_jitter_within_zero_and_the_ceiling(attempts):
    backoff = Backoff(base=0.1, cap=5.0)
    rng = random.Random(attempts)
    ceiling = backoff.ceiling(attempts)
    delays = [backoff.delay(attempts, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


def test_backoff_delay_is_reproducible_with_a_seeded_rng():
    backoff = Backoff(base=1.0, cap=60.0)
    first = [backoff.delay(n, random.Random(7)) for n in range(1, 10)]
    again = [backoff.delay(n, random.Random(7)) for n in range(1, 10)]
    assert first == again


def state_of(breaker: Breaker) -> BreakerState:
    return breaker.state  # read afresh: mypy would keep the state narrowed by an earlier assert


def open_breaker(breaker: Breaker, now: float) -> None:
    for _ in range(breaker.threshold - 1):
        assert breaker.failure(now) is False
    assert breaker.failure(now) is True


def test_breaker_stays_closed_below_threshold_and_success_resets_the_count():
    breaker = Breaker(threshold=3, open_seconds=10.0)
    assert breaker.allowance(0.0, 4) == 4
    assert breaker.failure(1.0) is False
    assert breaker.failure(2.0) is False
    assert breaker.success() is False  # already closed: no state change to report
    assert breaker.failures == 0
    assert breaker.failure(3.0) is False
    assert breaker.failure(4.0) is False
    assert breaker.state is BreakerState.CLOSED  # only *consecutive* failures count
    assert breaker.allowance(5.0, 4) == 4


def test_breaker_opens_at_threshold_and_lets_nothing_through_while_open():
    breaker = Breaker(threshold=3, open_seconds=10.0)
    open_breaker(breaker, now=100.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.reopen_at == 110.0
    assert breaker.allowance(100.0, 4) == 0
    assert breaker.allowance(109.99, 4) == 0
    assert breaker.state is BreakerState.OPEN


def test_breaker_half_opens_after_open_seconds_with_a_single_probe():
    breaker = Breaker(threshold=2, open_seconds=10.0)
    open_breaker(breaker, now=100.0)
    assert breaker.allowance(110.0, 4) == 1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allowance(110.5, 4) == 0  # the probe is out: nobody else goes
    assert breaker.allowance(111.0, 4) == 0


def test_breaker_gives_back_an_unused_probe_slot():
    breaker = Breaker(threshold=1, open_seconds=1.0)
    open_breaker(breaker, now=0.0)
    assert breaker.allowance(1.0, 2) == 1
    breaker.unused(1)  # nothing was due: the probe was not sent
    assert breaker.allowance(1.1, 2) == 1
    assert breaker.allowance(1.2, 0) == 0  # no free slot: the probe is not taken
    breaker.unused(0)
    assert breaker.allowance(1.3, 1) == 0  # the earlier probe slot is still out


def test_breaker_probe_success_closes():
    breaker = Breaker(threshold=2, open_seconds=10.0)
    open_breaker(breaker, now=0.0)
    assert breaker.allowance(10.0, 4) == 1
    assert breaker.success() is True
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0
    assert breaker.allowance(10.1, 4) == 4


def test_breaker_probe_failure_reopens_for_another_full_period():
    breaker = Breaker(threshold=5, open_seconds=10.0)
    open_breaker(breaker, now=0.0)
    assert breaker.allowance(10.0, 4) == 1
    assert breaker.failure(10.5) is False  # still unavailable: not a new state change to log
    assert breaker.state is BreakerState.OPEN
    assert breaker.reopen_at == 20.5
    assert breaker.allowance(20.0, 4) == 0
    assert breaker.allowance(20.5, 4) == 1  # the next probe
    assert state_of(breaker) is BreakerState.HALF_OPEN
