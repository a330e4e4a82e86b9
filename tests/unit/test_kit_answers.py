"""The declarative answer classifier: envelopes in JSON and XML, and every kind of rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.dispatch.outcomes import Delivered, Reject, Retry
from agent.uplinks.kit.answers import (
    BUSY,
    HOLD,
    REJECTED,
    UNREADABLE,
    AnswerRules,
    CodeRule,
    classify,
    judge,
    read_envelope,
    token_envelope,
)
from agent.uplinks.kit.tokens import TokenError

JSON = AnswerRules(
    token_codes=frozenset({40101}),
    token_keywords=("token",),
    rules=(
        CodeRule("pending", codes=frozenset({404}), kinds=frozenset({"use"})),
        CodeRule(BUSY, codes=frozenset({503}), keywords=("繁忙",), reason="busy: "),
        CodeRule(HOLD, codes=frozenset({403}), reason="check the keys: "),
    ),
    text_rules=(CodeRule(REJECTED, keywords=("参数错误",), reason="refused: "),),
)
XML = AnswerRules(
    body="xml",
    roots=("Response.Head",),
    code_key="RetCode",
    message_key="RetMsg",
    data_key="Token",
    delivered_codes=frozenset({0}),
)


def body(code: object, msg: str = "") -> str:
    """A `{code, msg}` JSON answer."""
    return f'{{"code": {code!r}, "msg": "{msg}", "data": {{"n": 1}}}}'.replace("'", '"')


@pytest.mark.parametrize(
    ("status", "text", "kind", "verdict", "reason"),
    [
        (200, body(200), "", "delivered", ""),
        (200, body("200"), "", "delivered", ""),  # a code as a string
        (401, "", "", "token", "token refused: HTTP 401"),
        (200, body(40101, "expired"), "", "token", "token refused: code 40101: expired"),
        (200, body(1, "Token 已失效"), "", "token", "token refused: code 1: Token 已失效"),
        (429, "", "", BUSY, "HTTP 429"),
        (502, body(7, "bad gateway"), "", BUSY, "HTTP 502: code 7: bad gateway"),
        (200, body(404, "未清洗"), "use", "pending", "code 404: 未清洗"),
        (200, body(404, "未清洗"), "other", REJECTED, "code 404: 未清洗"),
        (200, body(1, "系统繁忙"), "", BUSY, "busy: code 1: 系统繁忙"),
        (200, body(403, "签名错误"), "", HOLD, "check the keys: code 403: 签名错误"),
        (200, body(400), "", REJECTED, "code 400"),
        (200, "<html>x</html>", "", UNREADABLE, "unexpected answer: HTTP 200: <html>x</html>"),
        (200, "参数错误: name", "", REJECTED, "refused: HTTP 200: 参数错误: name"),
        (404, "not found", "", REJECTED, "HTTP 404: not found"),
    ],
)
def test_json_rules_classify_in_order(
    status: int, text: str, kind: str, verdict: str, reason: str
) -> None:
    judged = classify(JSON, status, text, kind)
    assert (judged.verdict, judged.reason) == (verdict, reason)


def test_the_envelope_may_sit_under_one_of_several_roots() -> None:
    rules = AnswerRules(roots=("", "content"), code_key="status", message_key="message")
    assert read_envelope(rules, '{"content": {"status": 1, "message": "m"}}').code == 1
    assert read_envelope(rules, '{"status": 0, "content": {"status": 1}}').code == 0
    assert read_envelope(rules, '{"message": "no code"}').message == "no code"
    assert read_envelope(rules, "[1, 2]").code is None


def test_xml_answers_are_read_by_element_path() -> None:
    text = "<Response><Head><RetCode>0</RetCode><Token>abc</Token></Head></Response>"
    assert read_envelope(XML, text).data == "abc"
    assert classify(XML, 200, text).verdict == "delivered"
    refused = "<Response><Head><RetCode>9</RetCode><RetMsg>无权限</RetMsg></Head></Response>"
    assert classify(XML, 200, refused).reason == "code 9: 无权限"


def test_xml_with_a_doctype_is_not_parsed() -> None:
    text = '<!DOCTYPE r [<!ENTITY e "x">]><Response><Head><RetCode>0</RetCode></Head></Response>'
    assert read_envelope(XML, text).code is None


def test_a_body_free_platform_delivers_any_2xx_unless_a_text_rule_says_otherwise() -> None:
    rules = AnswerRules(body="none", text_rules=(CodeRule(REJECTED, keywords=("ERROR",)),))
    assert judge(rules, 204, "") == Delivered("")
    assert judge(rules, 200, "ok") == Delivered("ok")
    assert isinstance(judge(rules, 200, "ERROR: bad id"), Reject)


def test_verdicts_become_outcomes_with_retry_after_where_the_platform_is_busy() -> None:
    assert judge(JSON, 200, body(200)) == Delivered(body(200))
    busy = judge(JSON, 503, "", retry_after=7.0)
    assert busy == Retry("HTTP 503", after=7.0, response="")
    token = judge(JSON, 401, "")
    assert isinstance(token, Retry) and token.reauthenticate and token.after == 0.0
    hold = judge(JSON, 200, body(403, "x"), retry_after=7.0)
    assert isinstance(hold, Retry) and hold.after is None
    own = judge(JSON, 200, body(404), kind="use")  # a verdict the kit does not know
    assert isinstance(own, Reject)


def test_token_endpoints_answer_an_envelope_or_raise() -> None:
    assert token_envelope(JSON, 200, body(200), "auth").data == {"n": 1}
    with pytest.raises(TokenError, match=r"^auth answered HTTP 500$"):
        token_envelope(JSON, 500, body(200), "auth")
    with pytest.raises(TokenError, match=r"^auth answered code 1: bad key$"):
        token_envelope(JSON, 200, body(1, "bad key"), "auth")


def test_rules_are_data_a_config_can_adjust() -> None:
    stricter = replace(JSON, rules=())
    assert classify(stricter, 200, body(1, "系统繁忙")).verdict == REJECTED


def test_auto_reads_json_and_else_xml() -> None:
    auto = AnswerRules(body="auto", roots=("", "JsonResult"))
    xml = "<JsonResult><data/><code>200</code><msg>上传成功</msg></JsonResult>"
    assert classify(auto, 200, xml).verdict == "delivered"
    assert classify(auto, 200, body(200)).verdict == "delivered"
    refused = "<JsonResult><data/><code>400</code><msg>参数错误</msg></JsonResult>"
    assert classify(auto, 200, refused).reason == "code 400: 参数错误"
    assert classify(replace(auto, body="json"), 200, xml).verdict == UNREADABLE


@pytest.mark.parametrize(
    "text",
    [
        "<!DOCTYPE html><html><body>Gateway login</body></html>",
        "<html>portal</html>",
        '{"code": 200, "msg": "ok", "data": {',
        "",
    ],
)
def test_a_2xx_answer_that_is_no_envelope_is_an_unreadable_retry(text: str) -> None:
    for body_kind in ("json", "auto"):
        result = judge(replace(JSON, body=body_kind), 200, text)
        assert isinstance(result, Retry) and result.unreadable, (body_kind, text)
    assert not judge(JSON, 503, text).unreadable  # type: ignore[union-attr]
    assert not judge(JSON, 200, body(403, "x")).unreadable  # type: ignore[union-attr]
