"""Operator sessions: throttled guessing, signed cookies that survive a restart, logouts."""

from __future__ import annotations

import pytest

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


def test_a_session_survives_a_restart_and_keeps_its_csrf_token(tmp_path):
    logouts = tmp_path / "dashboard-logouts.json"
    session_id = SessionStore(TOKEN, 3600, logouts=logouts).login(TOKEN.decode())
    before = SessionStore(TOKEN, 3600, logouts=logouts).get(session_id)
    after_restart = SessionStore(TOKEN, 3600, logouts=logouts).get(session_id)
    assert before is not None and after_restart == before


def test_sessions_end_when_the_token_is_rotated_or_they_expire():
    clock = Clock()
    session_id = SessionStore(TOKEN, 3600, clock).login(TOKEN.decode())
    assert SessionStore(b"rotated-token-0123456789", 3600, clock).get(session_id) is None
    clock.now += 3600
    assert SessionStore(TOKEN, 3600, clock).get(session_id) is None


def test_a_logout_holds_across_a_restart(tmp_path):
    logouts = tmp_path / "dashboard-logouts.json"
    store = SessionStore(TOKEN, 3600, logouts=logouts)
    gone, kept = store.login(TOKEN.decode()), store.login(TOKEN.decode())
    store.logout(gone)
    restarted = SessionStore(TOKEN, 3600, logouts=logouts)
    assert restarted.get(gone) is None
    assert restarted.get(kept) is not None


@pytest.mark.parametrize(
    "forge",
    [
        lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # another signature
        lambda s: "9" + s,  # a later expiry under the same signature
        lambda s: s.rsplit(".", 1)[0],  # no signature
        lambda s: "",
        lambda s: "²." + s.split(".", 1)[1],  # a digit that is not ASCII
        lambda s: "\udcff" + s,  # bytes that are not UTF-8, as aiohttp keeps them
    ],
)
def test_a_forged_or_damaged_cookie_is_no_session(forge):
    store = SessionStore(TOKEN, 3600)
    session_id = store.login(TOKEN.decode())
    assert session_id is not None
    assert store.get(forge(session_id)) is None
