"""Operator sessions: the API token traded for a signed cookie, a CSRF token per session."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

COOKIE = "edge_agent_session"
CSRF_FIELD = "csrf"  # in dashboard forms
CSRF_HEADER = "X-CSRF-Token"  # on the API calls the dashboard's script makes
ROUTE_PREFIX = "dashboard."  # every dashboard route is named so (see `is_dashboard_route`)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_LOGOUTS = 4096  # logged-out sessions remembered until they would have expired (bounded)
# Wrong tokens tolerated per address within the window before its logins are refused unread.
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0  # seconds
MAX_TRACKED = 1024  # addresses with recent failures kept (bounded memory; the oldest go first)


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser: its CSRF token and when it ends (Unix time)."""

    csrf: str
    expires: float


class SessionStore:
    """Sessions as cookies signed with a key derived from the API token: they survive a restart
    of the agent (a wall screen stays logged in) and all end when the token is rotated. The
    cookie never holds the token; logouts are remembered in `logouts` until the cookie expires."""

    def __init__(
        self,
        token: bytes,
        lifetime: float,
        clock: Callable[[], float] = time.time,
        logouts: Path | None = None,
    ) -> None:
        self._token = token
        self._key = hmac.new(token, b"edge-agent dashboard session v1", hashlib.sha256).digest()
        self.lifetime = lifetime
        self._clock = clock
        self._logouts_file = logouts
        self._logouts = self._read_logouts()
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
        body = f"{int(self._clock() + self.lifetime)}.{secrets.token_urlsafe(24)}"
        return f"{body}.{self._mac('session', body)}"

    def _recent_failures(self, remote: str) -> list[float]:
        since = self._clock() - FAILURE_WINDOW
        return [moment for moment in self._failures.get(remote, ()) if moment > since][
            -MAX_FAILURES:
        ]

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id: signed by us, not expired, not logged out."""
        expires, nonce, mac = _parts(session_id or "")
        signed = self._mac("session", f"{expires}.{nonce}").encode()
        if not hmac.compare_digest(as_bytes(mac), signed):
            return None
        if int(expires) <= self._clock() or nonce in self._logouts:
            return None
        return Session(self._mac("csrf", nonce), float(expires))

    def logout(self, session_id: str | None) -> None:
        """End the session for good, across restarts (unknown ids are ignored)."""
        session = self.get(session_id)
        if session is None:
            return
        now = self._clock()
        live = {nonce: end for nonce, end in self._logouts.items() if end > now}
        live[_parts(session_id or "")[1]] = session.expires
        self._logouts = dict(sorted(live.items(), key=lambda item: item[1])[-MAX_LOGOUTS:])
        self._write_logouts()

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

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _read_logouts(self) -> dict[str, float]:
        if self._logouts_file is None:
            return {}
        try:
            found = json.loads(self._logouts_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or damaged: sessions still expire on time
        if not isinstance(found, dict):
            return {}
        return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float)}

    def _write_logouts(self) -> None:
        if self._logouts_file is None:
            return
        temporary = self._logouts_file.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # remembered in memory all the same
            temporary.write_text(json.dumps(self._logouts), encoding="utf-8", newline="\n")
            os.replace(temporary, self._logouts_file)


def _parts(session_id: str) -> tuple[str, str, str]:
    """(expires, nonce, mac) of a well-formed session id; else values that never verify."""
    expires, _, rest = session_id.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or not (nonce and mac):
        return "0", "", "-"
    return expires, nonce, mac


def csrf_matches(session: Session, given: str) -> bool:
    """Whether `given` is the session's CSRF token (constant time)."""
    return hmac.compare_digest(as_bytes(given), session.csrf.encode())


def as_bytes(given: str) -> bytes:
    """A credential from a header, cookie or form as the bytes that were sent: aiohttp keeps
    bytes that are not UTF-8 as surrogates, which a plain encode() would raise on."""
    return given.encode("utf-8", "surrogateescape")


SESSIONS_KEY: web.AppKey[SessionStore] = web.AppKey("dashboard_sessions", SessionStore)


def is_dashboard_route(request: web.Request) -> bool:
    """Whether the request matched a dashboard route (they check the session themselves)."""
    name = request.match_info.route.name
    return name is not None and name.startswith(ROUTE_PREFIX)
