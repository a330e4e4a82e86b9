"""A platform's answers as data: where its code and message are, and what each code means.

Classification order: delivered, token refused, transient HTTP status, a body that is not the
platform's envelope (text rules), then the code rules in order; what matches nothing is rejected.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.uplinks.kit.tokens import TokenError

TRANSIENT_STATUSES = frozenset({408, 425, 429})

# A verdict the kit turns into an outcome; a platform may name its own (its uplink handles it).
DELIVERED, TOKEN, BUSY, HOLD, REJECTED = "delivered", "token", "busy", "hold", "rejected"
# A 2xx answer that is not the platform's envelope (a proxy page, JSON cut short): retried, and
# a dead letter with an alert once the uplink's unreadable_answer_attempts are used up.
UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class CodeRule:
    """Answers whose code is in `codes` or whose message mentions a keyword get `verdict`.

    `busy` retries after Retry-After or the backoff, `hold` after the backoff only (every message
    would fail alike, e.g. a refused signature), `rejected` dead-letters, `delivered` accepts;
    any other name is the platform's own. `kinds` limits the rule to those message kinds.
    """

    verdict: str
    codes: frozenset[int] = frozenset()
    keywords: tuple[str, ...] = ()
    reason: str = ""  # put before the answer in the outcome's reason
    kinds: frozenset[str] = frozenset()

    def matches(self, code: int | None, message: str, kind: str) -> bool:
        """Whether this rule speaks for an answer of `kind` with this code and message."""
        if self.kinds and kind not in self.kinds:
            return False
        return code in self.codes or _mentions(message, self.keywords)


@dataclass(frozen=True, slots=True)
class AnswerRules:
    """One platform's answer shape and the meaning of its codes: data, one instance a platform."""

    body: Literal["json", "xml", "auto", "none"] = "json"  # "auto": JSON, else XML; "none": any 2xx
    roots: tuple[str, ...] = ("",)  # dotted paths to the envelope, tried in order
    code_key: str = "code"
    message_key: str = "msg"
    data_key: str = "data"
    code_label: str = "code"  # how a reason names the code: "code 400: …"
    delivered_codes: frozenset[int] = frozenset({200})
    token_statuses: frozenset[int] = frozenset({401})
    token_codes: frozenset[int] = frozenset()
    token_keywords: tuple[str, ...] = ()
    token_reason: str = "token refused: "  # noqa: S105 - a reason prefix
    transient_statuses: frozenset[int] = TRANSIENT_STATUSES
    rules: tuple[CodeRule, ...] = ()  # on an envelope, after the token check
    text_rules: tuple[CodeRule, ...] = ()  # keywords in a 2xx body that is no envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """The code (None: the body is not the platform's envelope), message and data of a body."""

    code: int | None
    message: str = ""
    data: Any = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an answer means (`verdict`), and the reason an outcome would give."""

    verdict: str
    reason: str
    envelope: Envelope = field(default_factory=lambda: Envelope(None))


def read_envelope(rules: AnswerRules, text: str) -> Envelope:
    """The envelope of a JSON or XML body; code None when the body is not one."""
    body = _parse(rules.body, text)
    if not isinstance(body, dict):
        return Envelope(None)
    found = [r for r in (_at(body, root) for root in rules.roots) if isinstance(r, dict)]
    node = next((r for r in found if rules.code_key in r), found[-1] if found else {})
    message = str(node.get(rules.message_key) or "")
    try:
        code = int(node.get(rules.code_key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return Envelope(None, message, node.get(rules.data_key))
    return Envelope(code, message, node.get(rules.data_key))


def classify(rules: AnswerRules, status: int, text: str, kind: str = "") -> Verdict:
    """The verdict on one answer to a message of `kind`."""
    env = read_envelope(rules, text) if rules.body != "none" else Envelope(None)
    ok = 200 <= status < 300
    if ok and env.code is not None and env.code in rules.delivered_codes:
        return Verdict(DELIVERED, "", env)
    if env.code is not None:
        shown = f"{rules.code_label} {env.code}: {env.message}".rstrip(": ")
    else:
        shown = f"HTTP {status}: {text}".rstrip(": ")
    refused = env.code is not None and (
        env.code in rules.token_codes or _mentions(env.message, rules.token_keywords)
    )
    if status in rules.token_statuses or refused:
        return Verdict(TOKEN, f"{rules.token_reason}{shown}", env)
    if status in rules.transient_statuses or status >= 500:
        return Verdict(BUSY, shown if env.code is None else f"HTTP {status}: {shown}", env)
    if env.code is None:
        if not ok:
            return Verdict(REJECTED, shown, env)
        rule = next((r for r in rules.text_rules if r.matches(None, text, kind)), None)
        if rule is not None:
            return Verdict(rule.verdict, f"{rule.reason}{shown}", env)
        if rules.body == "none":
            return Verdict(DELIVERED, "", env)
        return Verdict(UNREADABLE, f"unexpected answer: {shown}", env)  # a proxy or portal page
    rule = next((r for r in rules.rules if r.matches(env.code, env.message, kind)), None)
    if rule is None:
        return Verdict(REJECTED, shown, env)
    return Verdict(rule.verdict, f"{rule.reason}{shown}", env)


def outcome(verdict: Verdict, text: str, retry_after: float | None = None) -> Outcome:
    """The outcome of a kit verdict (a platform's own verdict is rejected: handle it first)."""
    if verdict.verdict == DELIVERED:
        return Delivered(text)
    if verdict.verdict == TOKEN:
        return Retry(verdict.reason, after=0.0, response=text, reauthenticate=True)
    if verdict.verdict == BUSY:
        return Retry(verdict.reason, after=retry_after, response=text)
    if verdict.verdict == HOLD:
        return Retry(verdict.reason, response=text)
    if verdict.verdict == UNREADABLE:
        return Retry(verdict.reason, response=text, unreadable=True)
    return Reject(verdict.reason, response=text)


def judge(
    rules: AnswerRules, status: int, text: str, retry_after: float | None = None, kind: str = ""
) -> Outcome:
    """classify, then outcome: for platforms without verdicts of their own."""
    return outcome(classify(rules, status, text, kind), text, retry_after)


def token_envelope(rules: AnswerRules, status: int, text: str, endpoint: str) -> Envelope:
    """The envelope of a token endpoint's answer; TokenError unless HTTP 200 and a good code."""
    if status != 200:
        raise TokenError(f"{endpoint} answered HTTP {status}")
    env = read_envelope(rules, text) if rules.body != "none" else Envelope(None)
    if env.code is None and rules.body != "none":
        raise TokenError(f"{endpoint} answered HTTP 200 that is no envelope", unreadable=True)
    if env.code not in rules.delivered_codes:
        shown = f"{rules.code_label} {env.code}: {env.message}".rstrip(": ")
        raise TokenError(f"{endpoint} answered {shown}")
    return env


def _parse(body: str, text: str) -> Any:
    if body in ("json", "auto"):
        try:
            return json.loads(text)
        except ValueError:
            if body == "json":
                return None
    if body in ("xml", "auto") and "<!DOCTYPE" not in text.upper():
        try:
            root = ET.fromstring(text)  # noqa: S314 - no DOCTYPE, so no entity expansion
        except ET.ParseError:
            return None
        return {root.tag: _xml_dict(root)}
    return None


def _xml_dict(element: ET.Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    return {child.tag: _xml_dict(child) for child in children}


def _at(body: Mapping[str, Any], path: str) -> Any:
    node: Any = body
    for step in filter(None, path.split(".")):
        node = node.get(step) if isinstance(node, Mapping) else None
    return node


def _mentions(message: str, keywords: tuple[str, ...]) -> bool:
    lowered = message.lower()
    return any(k.lower() in lowered for k in keywords if k)
