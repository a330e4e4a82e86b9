"""Redaction: secrets and patient identifiers never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
import structlog

from agent.logs import MASK, Redactor, configure_logging


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.add_secrets(["hunter2-cloud-secret"])
    return r


@pytest.mark.parametrize(
    "text",
    [
        "token endpoint said: hunter2-cloud-secret is wrong",
        "Authorization: Bearer eyJhbGciOi.abc.def",
        '{"patient_name":"张三丰","age":40}',
        '{"error": "bad: {\\"patient_name\\": \\"\\u5f20\\u4e09\\u4e30\\"}"}',
        "姓名：李四 检查号 X1",
        "id card 33010219900101123X on file",
        "call 13812345678 now",
        "ward phone 0571-87654321",
        "access_token=abc123def&x=1",
    ],
)
def test_identifiers_in_free_text_are_masked(redactor, text):
    masked = redactor.text(text)
    assert MASK in masked
    for secret in (
        "hunter2",
        "eyJhbGciOi",
        "张三丰",
        "u5f20",
        "李四",
        "33010219900101123X",
        "13812345678",
        "87654321",
        "abc123def",
    ):
        assert secret not in masked


def test_sensitive_keys_are_masked_whatever_their_value(redactor):
    event = redactor(
        None,
        "info",
        {
            "event": "x",
            "client_secret": "s",
            "patient": {"name": "王五", "id": 7},
            "phone": 12345,
            "headers": [{"Authorization": "Basic Zm9v"}],
        },
    )
    assert event["client_secret"] == MASK
    assert event["patient"] == {"name": MASK, "id": 7}
    assert event["phone"] == MASK
    assert event["headers"] == [{"Authorization": MASK}]


def test_ordinary_values_are_left_alone(redactor):
    text = "delivered 42 messages to zhejiang_endoscope in 1.5 s at 2026-11-23T10:00:00Z"
    assert redactor.text(text) == text


def test_stdlib_and_structlog_lines_both_go_through_redaction():
    stream = io.StringIO()
    configure_logging("info", "json", secrets=["stdlib-secret-xyz"], stream=stream)
    try:
        logging.getLogger("aiohttp.client").warning("failed with stdlib-secret-xyz")
        structlog.get_logger("t").info("sent", phone="13812345678", detail="13812345678")
        try:
            raise ValueError("patient_name=赵六")
        except ValueError:
            structlog.get_logger("t").exception("crashed")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    text = stream.getvalue()
    for secret in ("stdlib-secret-xyz", "13812345678", "赵六"):
        assert secret not in text
    assert lines[2]["exception"].count(MASK) >= 1


def test_patient_and_exam_identifiers_in_platform_answers_are_masked():
    answer = (
        '{"status":1,"message":"患者ID: P0012345 不存在","patientID":"P0012345",'
        '"accessionNo":"ACC77","examNo":"EX9"}'
    )
    masked = Redactor().text(answer)
    assert not any(value in masked for value in ("P0012345", "ACC77", "EX9"))
    assert Redactor().value({"patient_id": "P1", "accession_number": "A1"}) == {
        "patient_id": "***",
        "accession_number": "***",
    }


def test_library_warnings_are_one_line_per_place_without_their_text():
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging("info", "json", stream=stream)
        try:
            for name in ("DOE^JOHN", "ROE^JANE"):  # what a peer sent, quoted by a library
                warnings.warn(f"Invalid value for VR PN: {name!r}", UserWarning, stacklevel=1)
        finally:
            logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["category"]) for line in lines] == [
        ("library.warning", "UserWarning")
    ]
    assert "DOE" not in stream.getvalue()
    assert "test_logs.py:" in lines[0]["at"]
