"""Operator sessions: how wrong tokens are throttled per address, on a controlled clock."""

from __future__ import annotations

from agent.web.dashboard.sessions import FAILURE_WINDOW, MAX_FAILURES, SessionStore

TOKEN = b"sessions-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_a_few_guesses_per_window_and_others_are_unaffected():
    clock = Clock()
    store = SessionStore(TOKEN, 3600, clock)
    for _ in range(MAX_FAILURES - 1):
        assert store.login("guess", "10.0.0.9") is None
        clock.now += 1
    assert store.retry_after("10.0.0.9") == 0
    assert store.login("guess", "10.0.0.9") is None
    assert store.retry_after("10.0.0.9") == FAILURE_WINDOW - (MAX_FAILURES - 1)
    assert store.retry_after("10.0.0.8") == 0
    clock.now += store.retry_after("10.0.0.9")  # the first guess leaves the window
    assert store.retry_after("10.0.0.9") == 0
    assert store.login("guess", "10.0.0.9") is None  # one more: the window is full again
    assert store.retry_after("10.0.0.9") > 0


def test_a_successful_login_forgets_the_address_failures():
    clock = Clock()
    store = SessionStore(TOKEN, 3600, clock)
    for _ in range(MAX_FAILURES - 1):
        store.login("guess", "10.0.0.9")
    assert store.login(TOKEN.decode(), "10.0.0.9") is not None
    assert store.login("typo", "10.0.0.9") is None
    assert store.retry_after("10.0.0.9") == 0
