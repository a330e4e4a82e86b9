"""Signing schemes and the mapping of the platform's answers to outcomes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from agent.dispatch.outcomes import Delivered, Reject, Retry
from agent.uplinks.zhejiang_endoscope import codec
from agent.uplinks.zhejiang_endoscope.examples import EXAMPLES
from agent.uplinks.zhejiang_endoscope.sign import DEFAULT_SCHEME, SCHEMES
from tests.unit.test_zhejiang_fields import config

TS = "1704067200000"

# --- signing ---------------------------------------------------------------------------------


def test_the_default_scheme_is_lowercase_hex_md5_of_key_secret_timestamp():
    assert DEFAULT_SCHEME == "md5_key_secret_timestamp"
    sign = SCHEMES[DEFAULT_SCHEME]("ak", "sk", TS, {"whatever": "ignored"})
    assert sign == hashlib.md5(f"aksk{TS}".encode()).hexdigest()
    assert sign == "51156478c7185e6ae4157ce27cb0b861"  # other fields do not take part


def test_pinned_digests_of_every_scheme():
    assert SCHEMES["md5_key_secret_timestamp"]("ak", "sk", TS, {}) == _md5(f"aksk{TS}")
    assert SCHEMES["md5_key_timestamp_secret"]("ak", "sk", TS, {}) == _md5(f"ak{TS}sk")
    params = {"b": "2", "a": "1", "empty": "", "accessSecret": "sk"}
    assert SCHEMES["md5_sorted_params"]("ak", "sk", TS, params) == _md5(
        f"a=1&accessKey=ak&b=2&timestamp={TS}&key=sk"
    )


def test_the_secret_changes_every_scheme():
    for signer in SCHEMES.values():
        assert signer("ak", "sk", TS, {"a": "1"}) != signer("ak", "sk2", TS, {"a": "1"})


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# --- answers ---------------------------------------------------------------------------------


def answer(code: Any, msg: str = "", data: Any = None) -> str:
    return json.dumps({"code": code, "msg": msg, "data": data}, ensure_ascii=False)


def outcome(status: int, text: str, kind: str = "rinseWater", age: float = 0.0, **cfg: Any):
    return codec.outcome(config(**cfg), kind, EXAMPLES[kind], status, text, age=age)


def test_code_200_is_delivered_with_the_answer_kept():
    text = answer(200, "上传成功")
    assert outcome(200, text) == Delivered(text)
    assert outcome(200, answer("200")) == Delivered(answer("200"))


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (200, answer(401, "token无效或已过期")),
        (200, answer(500, "accessToken expired")),
        (401, ""),
        (401, answer(401, "unauthorised")),
    ],
)
def test_token_errors_ask_for_reauthentication(status, text):
    result = outcome(status, text)
    assert isinstance(result, Retry) and result.reauthenticate and result.after == 0.0


@pytest.mark.parametrize(
    ("status", "text", "reason"),
    [
        (503, "", "HTTP 503"),
        (502, "<html>bad gateway</html>", "HTTP 502"),
        (429, answer(429, "too many"), "HTTP 429"),
        (200, answer(503, "系统繁忙，请稍后重试"), "platform busy: code 503"),
        (200, answer(1001, "服务繁忙"), "platform busy: code 1001: 服务繁忙"),
        (200, "<html>portal</html>", "unexpected answer"),
        (200, answer(403, "签名错误"), "signature refused"),
    ],
)
def test_transient_answers_are_retried(status, text, reason):
    result = outcome(status, text)
    assert isinstance(result, Retry) and not result.reauthenticate
    assert reason in result.reason


@pytest.mark.parametrize(
    ("status", "text", "reason"),
    [
        (200, answer(400, "参数wteNumber不能为空"), "code 400: 参数wteNumber不能为空"),
        (200, answer(404, "该内镜未清洗"), "code 404: 该内镜未清洗"),  # not a use step
        (404, "not found", "HTTP 404: not found"),
    ],
)
def test_other_codes_are_rejected_with_the_platforms_words(status, text, reason):
    assert outcome(status, text) == Reject(reason, response=text)


def test_an_unclean_scope_is_retried_within_the_window_then_rejected():
    text = answer(404, "该内镜未清洗")
    kind = "uploadUseStepData"
    early = outcome(
        200, text, kind, age=10.0, uncleaned_retry_window=100, uncleaned_retry_interval=30
    )
    assert isinstance(early, Retry) and early.after == 30 and "not cleaned yet" in early.reason
    late = outcome(
        200, text, kind, age=95.0, uncleaned_retry_window=100, uncleaned_retry_interval=30
    )
    assert isinstance(late, Retry) and late.after == pytest.approx(5.0)
    dead = outcome(200, text, kind, age=100.0, uncleaned_retry_window=100)
    assert isinstance(dead, Reject)
    assert dead.reason.startswith(f"{codec.UNCLEANED}: endoscope number=GIF-H290-01 cleanId=C2024")
    assert dead.reason.endswith("code 404: 该内镜未清洗")
    assert "HIS0001" not in dead.reason and "测试患者" not in dead.reason  # no patient data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("tok", ("tok", None)),
        ({"accessToken": "tok", "expiresIn": 60}, ("tok", 60.0)),
        ({"access_token": "tok", "expires_in": "60"}, ("tok", 60.0)),
        ({"token": "tok", "expiresIn": "soon"}, ("tok", None)),
        ({"other": 1}, (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_the_token_is_found_in_the_answers_data(data, expected):
    assert codec.parse_token(data) == expected


def xml_answer(code: Any, msg: str = "") -> str:
    return f"<JsonResult><data></data><code>{code}</code><msg>{msg}</msg></JsonResult>"


def test_xml_answers_as_the_seed_shows_are_read_like_json_ones():
    assert isinstance(outcome(200, xml_answer(200, "上传成功")), Delivered)
    refused = outcome(200, xml_answer(400, "参数wteNumber不能为空"))
    assert isinstance(refused, Reject) and "code 400: 参数wteNumber不能为空" in refused.reason
    uncleaned = outcome(200, xml_answer(404, "该内镜未清洗"), kind="uploadUseStepData")
    assert isinstance(uncleaned, Retry) and uncleaned.deferred
    token = outcome(200, xml_answer(401, "token无效或已过期"))
    assert isinstance(token, Retry) and token.reauthenticate


def test_answer_format_json_or_xml_reads_only_that_one():
    assert isinstance(outcome(200, answer(200), answer_format="json"), Delivered)
    assert isinstance(outcome(200, xml_answer(200), answer_format="xml"), Delivered)
    for fmt, text in (("json", xml_answer(200)), ("xml", answer(200))):
        result = outcome(200, text, answer_format=fmt)
        assert isinstance(result, Retry) and result.unreadable
