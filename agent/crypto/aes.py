"""AES-ECB/CBC with PKCS#5 padding as Java's `AES/ECB/PKCS5Padding` (seed 003 §3.1)."""

from __future__ import annotations

from typing import Any, Literal

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

from agent.crypto.encoding import TextOut, decode, encode, to_bytes, to_text
from agent.errors import CryptoError

Mode = Literal["ECB", "CBC"]
BLOCK = 16


def key_bytes(key: str | bytes, setting: str = "aes_key") -> bytes:
    """The key as UTF-8 bytes; 16, 24 or 32 of them, as Java's SecretKeySpec insists."""
    raw = to_bytes(key, setting)
    if len(raw) not in (16, 24, 32):
        raise CryptoError(setting, f"an AES key is 16, 24 or 32 bytes, not {len(raw)}")
    return raw


def _cipher(key: bytes, mode: Mode, iv: str | bytes | None, iv_setting: str) -> Any:
    if mode == "ECB":
        return AES.new(key, AES.MODE_ECB)
    raw = to_bytes(iv, iv_setting) if iv is not None else b""
    if len(raw) != BLOCK:
        raise CryptoError(iv_setting, f"the AES-CBC IV must be {BLOCK} bytes, not {len(raw)}")
    return AES.new(key, AES.MODE_CBC, iv=raw)


def encrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    setting: str = "aes_key",
    iv_setting: str = "aes_iv",
) -> bytes:
    """AES ciphertext of `data` padded with PKCS#5/7."""
    cipher = _cipher(key_bytes(key, setting), mode, iv, iv_setting)
    return bytes(cipher.encrypt(pad(data, BLOCK)))


def decrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    setting: str = "aes_key",
    iv_setting: str = "aes_iv",
    source: str = "ciphertext",
) -> bytes:
    """The plaintext of an AES ciphertext; CryptoError naming `source` if it is not one."""
    cipher = _cipher(key_bytes(key, setting), mode, iv, iv_setting)
    if not data or len(data) % BLOCK:
        raise CryptoError(source, f"AES ciphertext length {len(data)} is not a multiple of 16")
    try:
        return unpad(cipher.decrypt(data), BLOCK)
    except ValueError as err:
        raise CryptoError(source, "AES padding is wrong: another key, IV or mode") from err


def encrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    output: TextOut = "base64",
    setting: str = "aes_key",
    iv_setting: str = "aes_iv",
) -> str:
    """`text` (UTF-8) encrypted and written as `output` ("mime" = Java's 76-column Base64)."""
    data = encrypt(to_bytes(text), key, mode=mode, iv=iv, setting=setting, iv_setting=iv_setting)
    return encode(data, output)


def decrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    output: TextOut = "base64",
    setting: str = "aes_key",
    iv_setting: str = "aes_iv",
    source: str = "ciphertext",
) -> str:
    """The UTF-8 text inside a ciphertext; Base64 may be on one line or MIME-wrapped."""
    data = decrypt(
        decode(text, output, source),
        key,
        mode=mode,
        iv=iv,
        setting=setting,
        iv_setting=iv_setting,
        source=source,
    )
    return to_text(data, source)
