"""Digests and HMACs against RFC 1321, FIPS 180, GM/T 0004 (SM3), RFC 2202 and RFC 4231."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.crypto import digest


@pytest.mark.parametrize(
    ("algorithm", "data", "expected"),
    [
        ("md5", "", "d41d8cd98f00b204e9800998ecf8427e"),  # RFC 1321 A.5
        ("md5", "abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("md5", "message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("sha1", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),  # FIPS 180-2 B.1
        ("sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        # GM/T 0004-2012 appendix A, examples 1 and 2
        ("sm3", "abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        ("sm3", "abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_published_digests(algorithm, data: str, expected: str) -> None:
    assert digest.hexdigest(algorithm, data) == expected
    assert digest.hexdigest(algorithm, data.encode(), upper=True) == expected.upper()


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("md5", "750c783e6ab0b503eaa86e310a5db738"),  # RFC 2202 test case 2
        ("sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),  # RFC 2202 test case 2
        # RFC 4231 test case 2
        ("sha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ],
)
def test_published_hmacs(algorithm, expected: str) -> None:
    assert digest.hmac_hex(algorithm, "Jefe", "what do ya want for nothing?") == expected
    assert digest.hmac_hex(algorithm, b"Jefe", "what do ya want for nothing?", upper=True) == (
        expected.upper()
    )


def test_sm3_fallback_matches_hashlib(monkeypatch: pytest.MonkeyPatch) -> None:
    # hashlib's SM3 depends on the OpenSSL build; gmssl's pure-Python SM3 stands in without it
    expected = digest.hexdigest("sm3", "abc")
    key = b"k" * 100  # longer than a block: hashed first, as RFC 2104 says
    hmac_expected = digest.hmac_hex("sm3", key, "abc")
    monkeypatch.setattr(digest, "_HASHLIB_SM3", False)
    assert digest.hexdigest("sm3", "abc") == expected
    assert digest.hmac_hex("sm3", key, "abc") == hmac_expected
    assert digest.hmac_hex("sm3", "Jefe", "x") == _reference_hmac_sm3(b"Jefe", b"x")


def _reference_hmac_sm3(key: bytes, data: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(key, data, lambda *a: hashlib.new("sm3", *a)).hexdigest()


@given(st.binary(), st.binary(max_size=200))
def test_sm3_fallback_is_the_same_function(data: bytes, key: bytes) -> None:
    from gmssl import sm3

    assert digest.digest("sm3", data).hex() == sm3.sm3_hash(list(data))
    assert digest.hmac_hex("sm3", key, data) == _reference_hmac_sm3(key, data)
