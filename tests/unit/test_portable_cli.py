"""The CLI's output on Windows when redirected: UTF-8, whatever the ANSI code page."""

from __future__ import annotations

import io

import pytest

from agent.cli import utf8_when_redirected

TEXT = "告警 未确认: 清洗机 2 号\n"


def redirected(encoding: str) -> tuple[io.BytesIO, io.TextIOWrapper]:
    """A stdout redirected to a file, opened with the code page Windows gives it."""
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding=encoding)


@pytest.mark.parametrize("code_page", ["cp1252", "cp936"])  # English, Chinese Windows
def test_redirected_output_on_windows_is_utf8(code_page: str):
    raw, stream = redirected(code_page)
    utf8_when_redirected(stream, platform="win32")
    stream.write(TEXT)  # on cp1252 this raised UnicodeEncodeError before
    stream.flush()
    assert raw.getvalue().decode("utf-8") == TEXT


def test_elsewhere_the_stream_is_left_as_it_is():
    _, stream = redirected("cp1252")
    utf8_when_redirected(stream, platform="linux")
    assert stream.encoding == "cp1252"
