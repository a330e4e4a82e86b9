"""Sans-I/O: build a request form from an outbox message, turn an answer into an outcome."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.fields import (
    AUTH_FIELDS,
    ENDPOINTS,
    is_empty,
    lists,
    render,
    unknown_fields,
    validate,
)

USE_STEP = "uploadUseStepData"
UNCLEANED = "scope used without a recorded cleaning"
UNCLEANED_ALERT = "scope_used_without_cleaning"  # a compliance event: raised as an alert
"""Dead-letter reasons of use steps the platform kept refusing with 404 start with this."""
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def build_form(
    kind: str, payload: Mapping[str, Any], config: ZhejiangEndoscopeConfig
) -> tuple[dict[str, str], list[str]]:
    """The domain's fields plus the institution's, rendered; and every table violation."""
    if kind not in ENDPOINTS:
        return {}, [f"unknown endpoint {kind!r} (not in the seed)"]
    problems = [f"{name}: not a field of {kind}" for name in unknown_fields(kind, payload)]
    problems += [f"{k}: set by the uplink, not the payload" for k in AUTH_FIELDS if k in payload]
    merged = {k: v for k, v in payload.items() if k not in AUTH_FIELDS}
    for name, value in (("uniqueCode", config.unique_code), ("creditCode", config.credit_code)):
        if lists(kind, name) and is_empty(merged.get(name)):
            merged[name] = value
    problems += validate(kind, merged, config.time_format, config.date_format)
    form = {k: render(v) for k, v in merged.items() if not is_empty(v)}
    return form, problems


def parse_answer(text: str) -> tuple[int | None, str, Any]:
    """(code, msg, data) of a `{code, msg, data}` answer; code None when it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, "", None
    if not isinstance(body, dict):
        return None, "", None
    try:
        code = int(body.get("code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, str(body.get("msg") or ""), body.get("data")
    return code, str(body.get("msg") or ""), body.get("data")


def parse_token(data: Any) -> tuple[str | None, float | None]:
    """The token and its lifetime (s) from the answer's `data`: a string or an object."""
    if isinstance(data, str):
        return (data or None), None
    if not isinstance(data, dict):
        return None, None
    token = next(
        (data[k] for k in ("accessToken", "access_token", "token") if isinstance(data.get(k), str)),
        None,
    )
    lifetime = next((data[k] for k in ("expiresIn", "expires_in", "expireIn") if k in data), None)
    try:
        return token or None, None if lifetime is None else float(lifetime)
    except (TypeError, ValueError):
        return token or None, None


def outcome(
    config: ZhejiangEndoscopeConfig,
    kind: str,
    payload: Mapping[str, Any],
    status: int,
    text: str,
    *,
    age: float,
    retry_after: float | None = None,
) -> Outcome:
    """Map one HTTP answer to Delivered, Retry or Reject; `age` = seconds since queued."""
    code, msg, _ = parse_answer(text)
    if 200 <= status < 300 and code == 200:
        return Delivered(text)
    shown = f"code {code}: {msg}" if code is not None else f"HTTP {status}: {text}".rstrip(": ")
    if (
        status == 401
        or code in config.token_error_codes
        or (code is not None and _mentions(msg, config.token_error_keywords))
    ):
        return Retry(f"token refused: {shown}", after=0.0, response=text, reauthenticate=True)
    if status in TRANSIENT_STATUSES or status >= 500:
        reason = shown if code is None else f"HTTP {status}: {shown}"  # never "HTTP 503: HTTP 503"
        return Retry(reason, after=retry_after, response=text)
    if code is None:
        if 200 <= status < 300:  # not the platform's shape: a proxy or portal page
            return Retry(f"unexpected answer: {shown}", response=text)
        return Reject(shown, response=text)
    if code == 404 and kind == USE_STEP:
        return _uncleaned(config, payload, shown, text, age)
    if code in config.busy_codes or _mentions(msg, config.busy_keywords):
        return Retry(f"platform busy: {shown}", after=retry_after, response=text)
    if code in config.sign_error_codes:
        # Every message would fail alike: keep them queued until the configuration is fixed.
        return Retry(f"signature refused (check sign_scheme and keys): {shown}", response=text)
    return Reject(shown, response=text)


def _uncleaned(
    config: ZhejiangEndoscopeConfig, payload: Mapping[str, Any], shown: str, text: str, age: float
) -> Outcome:
    scope = f"endoscope number={payload.get('number')} cleanId={payload.get('cleanId')}"
    window = config.uncleaned_retry_window
    if age < window:
        # The cleaning record may still be on its way (another key, a slower uplink): wait.
        return Retry(
            f"not cleaned yet ({scope}), retrying for up to {window:g} s: {shown}",
            after=min(config.uncleaned_retry_interval, window - age),
            response=text,
            deferred=True,
        )
    waited = f"{age / 60:.0f} min" if age >= 120 else f"{age:.1f} s"
    return Reject(
        f"{UNCLEANED}: {scope} still refused after {waited}: {shown}",
        response=text,
        alert=UNCLEANED_ALERT,
    )


def _mentions(msg: str, keywords: list[str]) -> bool:
    lowered = msg.lower()
    return any(k.lower() in lowered for k in keywords if k)
