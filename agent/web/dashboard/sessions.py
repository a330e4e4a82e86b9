"""Operator sessions: the API token traded for a random cookie, a CSRF token per session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

COOKIE = "edge_agent_session"
CSRF_FIELD = "csrf"  # in dashboard forms
CSRF_HEADER = "X-CSRF-Token"  # on the API calls the dashboard's script makes
ROUTE_PREFIX = "dashboard."  # every dashboard route is named so (see `is_dashboard_route`)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 256  # bounded memory: the oldest session goes first
# Wrong tokens tolerated per address within the window before its logins are refused unread.
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0  # seconds
MAX_TRACKED = 1024  # addresses with recent failures kept (bounded memory; the oldest go first)


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser: its CSRF token and when it ends (monotonic seconds)."""

    csrf: str
    expires: float


class SessionStore:
    """Sessions by the SHA-256 of their id; the cookie never holds the token, the store never
    holds the cookie."""

    def __init__(
        self, token: bytes, lifetime: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._token = token
        self.lifetime = lifetime
        self._clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, remote: str) -> float:
        """Seconds until `remote` may try a token again (0: now); throttles guessing."""
        recent = self._recent_failures(remote)
        if len(recent) < MAX_FAILURES:
            return 0.0
        return recent[-MAX_FAILURES] + FAILURE_WINDOW - self._clock()

    def login(self, given: str, remote: str = "") -> str | None:
        """A new session id if `given` is the operator token, else None (constant time)."""
        if not hmac.compare_digest(as_bytes(given), self._token):
            self._failures[remote] = [*self._recent_failures(remote), self._clock()]
            self._failures.move_to_end(remote)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
            return None
        self._failures.pop(remote, None)
        session_id = secrets.token_urlsafe(32)
        self._sessions[_key(session_id)] = Session(
            secrets.token_urlsafe(32), self._clock() + self.lifetime
        )
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id

    def _recent_failures(self, remote: str) -> list[float]:
        since = self._clock() - FAILURE_WINDOW
        return [moment for moment in self._failures.get(remote, ()) if moment > since][
            -MAX_FAILURES:
        ]

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id; an expired one is forgotten."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires <= self._clock():
            del self._sessions[key]
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        """End the session (unknown ids are ignored)."""
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def of(self, request: web.Request) -> Session | None:
        """The request's session, from its cookie."""
        return self.get(request.cookies.get(COOKIE))

    def allows_api(self, request: web.Request) -> bool:
        """A JSON API call from the dashboard: a live session, and for writes its CSRF header."""
        session = self.of(request)
        if session is None:
            return False
        return request.method in SAFE_METHODS or csrf_matches(
            session, request.headers.get(CSRF_HEADER, "")
        )


def csrf_matches(session: Session, given: str) -> bool:
    """Whether `given` is the session's CSRF token (constant time)."""
    return hmac.compare_digest(as_bytes(given), session.csrf.encode())


def _key(session_id: str) -> bytes:
    # Looked up by hash: a dictionary probe must not compare the secret itself.
    return hashlib.sha256(as_bytes(session_id)).digest()


def as_bytes(given: str) -> bytes:
    """A credential from a header, cookie or form as the bytes that were sent: aiohttp keeps
    bytes that are not UTF-8 as surrogates, which a plain encode() would raise on."""
    return given.encode("utf-8", "surrogateescape")


SESSIONS_KEY: web.AppKey[SessionStore] = web.AppKey("dashboard_sessions", SessionStore)


def is_dashboard_route(request: web.Request) -> bool:
    """Whether the request matched a dashboard route (they check the session themselves)."""
    name = request.match_info.route.name
    return name is not None and name.startswith(ROUTE_PREFIX)
