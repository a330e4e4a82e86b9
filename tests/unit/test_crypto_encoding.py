"""encodeURI as JavaScript does it, seed 004's `$` variant, Base64 in Java's MIME layout."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.crypto import encoding
from agent.errors import CryptoError

JS_ENCODE_URI_KEEPS = ";,/?:@&=+$-_.!~*'()#"  # ECMA-262 uriReserved + uriUnescaped + "#"


def test_seed_004_example() -> None:
    # seed 004 §4.4.3.1 备注: encodeURI, then every % replaced by $
    assert encoding.encode_uri_dollar("张医生") == "$E5$BC$A0$E5$8C$BB$E7$94$9F"
    assert (
        encoding.encode_uri_dollar("WYHT://hisUserId=1001&type=1&doctorName=张医生")
        == "WYHT://hisUserId=1001&type=1&doctorName=$E5$BC$A0$E5$8C$BB$E7$94$9F"
    )
    assert (
        encoding.encode_uri("http://IP+PORT/hrball/?hisUserId=1001&type=1&doctorName=张医生")
        == "http://IP+PORT/hrball/?hisUserId=1001&type=1&doctorName=%E5%BC%A0%E5%8C%BB%E7%94%9F"
    )


def test_which_ascii_characters_stay() -> None:
    for code in range(128):
        char = chr(code)
        kept = char.isalnum() or char in JS_ENCODE_URI_KEEPS
        assert (encoding.encode_uri(char) == char) == kept, repr(char)
        if not kept:
            assert encoding.encode_uri(char) == f"%{code:02X}"


def test_known_javascript_outputs() -> None:
    # what encodeURI gives in a browser console
    assert encoding.encode_uri("a b%c") == "a%20b%25c"
    assert encoding.encode_uri("😀") == "%F0%9F%98%80"
    assert encoding.encode_uri('[x]{y}|\\^`"<>') == "%5Bx%5D%7By%7D%7C%5C%5E%60%22%3C%3E"
    assert encoding.encode_uri_dollar("A B") == "A$20B"


def test_a_lone_surrogate_is_refused_as_javascript_does() -> None:
    with pytest.raises(CryptoError):
        encoding.encode_uri("\ud800")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_the_brief_recipe_agrees(text: str) -> None:
    assert encoding.encode_uri(text) == quote(text, safe=JS_ENCODE_URI_KEEPS)


def test_java_mime_base64_layout() -> None:
    data = bytes(range(256)) * 2
    text = encoding.b64encode(data, mime=True)
    lines = text.split("\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert not text.endswith("\r\n")
    assert "".join(lines) == base64.b64encode(data).decode()


@pytest.mark.parametrize("separator", ["\r\n", "\n"])
def test_mime_and_sun_misc_base64_are_accepted(separator: str) -> None:
    data = bytes(range(200))
    wrapped = separator.join(base64.encodebytes(data).decode().splitlines()) + separator
    assert encoding.b64decode(wrapped, "param") == data


def test_bad_base64_and_hex_name_the_source() -> None:
    with pytest.raises(CryptoError, match=r"^param: not Base64$"):
        encoding.b64decode("ab$c", "param")
    with pytest.raises(CryptoError, match=r"^doctorIdCardNo: not hex$"):
        encoding.hexdecode("xyz", "doctorIdCardNo")
