"""AES-ECB/CBC PKCS#5 (seed 003 §3.1) against NIST and a sample in Java's Base64 layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.crypto import aes
from agent.errors import CryptoError

# NIST SP 800-38A F.1.1 (ECB-AES128) and F.2.1 (CBC-AES128), first block
NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NIST_PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
NIST_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")

# A 基卫 request as Java's encoders print it: ciphertext made by
# `openssl enc -aes-128-ecb -K <hex of KEY>` (not by this code), Base64 wrapped at 76 columns.
KEY = "abcdef0123456789"
PLAIN = (
    '{"medicarecode":"330100198001010011","yyid00":"6930","businesstype":"1","type":"2",'
    '"note":"基卫申请单"}'
)
LINE_1 = "AMDFs3Mz46WL3gyfIcufB+0y+ZaVKw+D186ZKaTRZHjHTgwgsKktCDIagBcTTw144XHUfGfH+UsZ"
LINE_2 = "5UVH+LtKf3c2pkInG3NZ4WlZl/IdSNe8BLueSqsTCriv4zs6fCcBDpENV7Osv7KGr9nQP2rw2g=="
JAVA_MIME = f"{LINE_1}\r\n{LINE_2}"  # java.util.Base64.getMimeEncoder()
SUN_MISC = f"{LINE_1}\r\n{LINE_2}\r\n"  # sun.misc.BASE64Encoder on Windows (seed 003's code)


def test_nist_vectors() -> None:
    assert aes.encrypt(NIST_PLAIN, NIST_KEY)[:16].hex() == "3ad77bb40d7a3660a89ecaf32466ef97"
    cbc = aes.encrypt(NIST_PLAIN, NIST_KEY, mode="CBC", iv=NIST_IV)
    assert cbc[:16].hex() == "7649abac8119b246cee98e9b12e9197d"


def test_java_mime_sample_both_ways() -> None:
    assert aes.encrypt_text(PLAIN, KEY, output="mime") == JAVA_MIME
    assert aes.encrypt_text(PLAIN, KEY) == LINE_1 + LINE_2
    for text in (JAVA_MIME, SUN_MISC, SUN_MISC.replace("\r\n", "\n"), LINE_1 + LINE_2):
        assert aes.decrypt_text(text, KEY) == PLAIN


@given(st.text(), st.sampled_from([16, 24, 32]), st.sampled_from(["ECB", "CBC"]))
def test_round_trip(text: str, size: int, mode: str) -> None:
    key, iv = "k" * size, "0123456789abcdef"
    cipher = aes.encrypt_text(text, key, mode=mode, iv=iv, output="mime")  # type: ignore[arg-type]
    assert aes.decrypt_text(cipher, key, mode=mode, iv=iv) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "setting"),
    [
        (lambda: aes.encrypt_text("x", "fifteen bytes!!"), "aes_key"),
        (lambda: aes.encrypt_text("x", "密钥" * 8), "aes_key"),  # 16 characters, 48 bytes
        (lambda: aes.encrypt_text("x", KEY, mode="CBC", iv=None), "aes_iv"),
        (lambda: aes.decrypt_text("@@@@", KEY, source="param"), "param"),
        (lambda: aes.decrypt_text("AAAA", KEY, source="param"), "param"),
        (lambda: aes.decrypt_text(JAVA_MIME, "another key 16 b", source="param"), "param"),
    ],
    ids=["15-byte key", "multibyte key", "no iv", "not base64", "short", "wrong key"],
)
def test_bad_keys_and_ciphertexts_raise_crypto_error(call, setting: str) -> None:
    with pytest.raises(CryptoError) as info:
        call()
    assert info.value.setting == setting
