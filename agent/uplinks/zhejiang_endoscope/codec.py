"""Sans-I/O: build a request form from an outbox message, turn an answer into an outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agent.dispatch.outcomes import Outcome, Reject, Retry
from agent.uplinks.kit import answers
from agent.uplinks.kit.answers import BUSY, HOLD, AnswerRules, CodeRule, classify, read_envelope
from agent.uplinks.kit.fieldmap import apply
from agent.uplinks.kit.fields import is_empty, render
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from agent.uplinks.zhejiang_endoscope.fields import (
    AUTH_FIELDS,
    ENDPOINTS,
    lists,
    unknown_fields,
    validate,
)
from agent.uplinks.zhejiang_endoscope.records import MAPS
from agent.vocabulary.records import REPROCESSING_RECORDS

USE_STEP = "uploadUseStepData"
UNCLEANED = "scope used without a recorded cleaning"
UNCLEANED_ALERT = "scope_used_without_cleaning"  # a compliance event: raised as an alert
"""Dead-letter reasons of use steps the platform kept refusing with 404 start with this."""
UNCLEANED_VERDICT = "uncleaned"  # a use step refused with 404: its cleaning may be on its way
_OK = frozenset({200})
# The scope's names a neutral record may carry, by scope_refs choice.
SCOPE_NAMES = {"rfid": "scope_rfid", "number": "scope_number", "steel_number": "scope_steel_number"}


def build_form(
    kind: str, payload: Mapping[str, Any], config: ZhejiangEndoscopeConfig
) -> tuple[dict[str, str], list[str]]:
    """The record's fields plus the institution's, rendered; and every table violation.

    A neutral record (its `vocabulary` says so) is mapped to the seed's fields first; a payload
    without one was queued before the records were neutral and is in the seed's fields already.
    """
    if kind not in ENDPOINTS:
        return {}, [f"unknown endpoint {kind!r} (not in the seed)"]
    if payload.get("vocabulary") == REPROCESSING_RECORDS:
        if kind not in MAPS:
            return {}, [f"no map of neutral {kind} records"]
        payload, chosen = _choose_scope(kind, payload, config)
        if chosen:
            return {}, [chosen]
        formats = {"DT": config.time_format, "date": config.date_format}
        payload, mapping_problems = apply(MAPS[kind], payload, formats)
        if mapping_problems:
            return {}, mapping_problems
    problems = [f"{name}: not a field of {kind}" for name in unknown_fields(kind, payload)]
    problems += [f"{k}: set by the uplink, not the payload" for k in AUTH_FIELDS if k in payload]
    merged = {k: v for k, v in payload.items() if k not in AUTH_FIELDS}
    for name, value in (("uniqueCode", config.unique_code), ("creditCode", config.credit_code)):
        if lists(kind, name) and is_empty(merged.get(name)):
            merged[name] = value
    problems += validate(kind, merged, config.time_format, config.date_format)
    form = {k: render(v) for k, v in merged.items() if not is_empty(v)}
    return form, problems


def _choose_scope(
    kind: str, record: Mapping[str, Any], config: ZhejiangEndoscopeConfig
) -> tuple[Mapping[str, Any], str]:
    """The record with `scope_ref` set as the endpoint's scope_refs choice says, or a problem.
    Records queued before they named the scope every way keep their scope_ref."""
    choice = config.scope_ref(kind)
    if choice == "domain" or not record.get("scope_number"):
        return record, ""
    name = record.get(SCOPE_NAMES[choice])
    if is_empty(name):
        return record, f"rfidNumber: the scope has no {choice} (scope_refs.{kind} = {choice!r})"
    return {**record, "scope_ref": name}, ""


# The seed's answers: {code, msg, data}, code 200 delivered; the config adds the other codes.
# Its upload answers are labelled "xml格式数据" (<JsonResult><data/><code/><msg/></JsonResult>),
# its token answer JSON: both are read unless answer_format says which one.
ANSWERS = AnswerRules(
    body="auto",
    roots=("", "JsonResult"),
    code_key="code",
    message_key="msg",
    data_key="data",
    delivered_codes=_OK,
)


def answer_rules(config: ZhejiangEndoscopeConfig) -> AnswerRules:
    """The seed's answer rules with the codes and keywords this config names."""
    return replace(
        ANSWERS,
        body=config.answer_format,
        token_codes=frozenset(config.token_error_codes),
        token_keywords=tuple(config.token_error_keywords),
        rules=(
            CodeRule(UNCLEANED_VERDICT, codes=frozenset({404}), kinds=frozenset({USE_STEP})),
            CodeRule(
                BUSY,
                codes=frozenset(config.busy_codes),
                keywords=tuple(config.busy_keywords),
                reason="platform busy: ",
            ),
            # Every message would fail alike: keep them queued until the configuration is fixed.
            CodeRule(
                HOLD,
                codes=frozenset(config.sign_error_codes),
                reason="signature refused (check sign_scheme and keys): ",
            ),
        ),
    )


def parse_answer(text: str) -> tuple[int | None, str, Any]:
    """(code, msg, data) of a `{code, msg, data}` answer; code None when it is not one."""
    env = read_envelope(ANSWERS, text)
    return env.code, env.message, env.data


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
    verdict = classify(answer_rules(config), status, text, kind)
    if verdict.verdict == UNCLEANED_VERDICT:
        return _uncleaned(config, payload, verdict.reason, text, age)
    return answers.outcome(verdict, text, retry_after)


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
