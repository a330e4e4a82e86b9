"""SM4 (GB/T 32907) ECB/CBC with PKCS#7 padding; gmssl's block function, padding checked here."""

from __future__ import annotations

import re
from typing import Literal

from Crypto.Util.Padding import pad, unpad
from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4

from agent.crypto.encoding import TextOut, decode, encode, to_bytes, to_text
from agent.errors import CryptoError

Mode = Literal["ECB", "CBC"]
BLOCK = 16
_NO_PADDING = -1  # gmssl pads ECB only for its PKCS7/ZERO modes; we pad and check ourselves
_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")


def key_bytes(value: str | bytes, setting: str = "sm4_key") -> bytes:
    """16 bytes: raw bytes, 32 hex digits, or a 16-byte UTF-8 text."""
    if isinstance(value, str):
        value = bytes.fromhex(value) if _HEX32.match(value) else to_bytes(value, setting)
    if len(value) != BLOCK:
        raise CryptoError(setting, "SM4 takes 16 bytes: 32 hex digits or 16 characters")
    return value


def _blocks(key: bytes, direction: int, data: bytes) -> bytes:
    cipher = CryptSM4(mode=direction, padding_mode=_NO_PADDING)
    cipher.set_key(key, direction)
    return bytes(cipher.crypt_ecb(data))


def _iv(iv: str | bytes | None, mode: Mode, setting: str) -> bytes:
    if mode == "ECB":
        return b""
    if iv is None:
        raise CryptoError(setting, "SM4-CBC needs an IV")
    return key_bytes(iv, setting)


def encrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    setting: str = "sm4_key",
    iv_setting: str = "sm4_iv",
) -> bytes:
    """SM4 ciphertext of `data` padded with PKCS#7."""
    raw_key, chain = key_bytes(key, setting), _iv(iv, mode, iv_setting)
    padded = pad(data, BLOCK)
    if mode == "ECB":
        return _blocks(raw_key, SM4_ENCRYPT, padded)
    out = []
    for i in range(0, len(padded), BLOCK):
        block = bytes(a ^ b for a, b in zip(padded[i : i + BLOCK], chain, strict=True))
        chain = _blocks(raw_key, SM4_ENCRYPT, block)
        out.append(chain)
    return b"".join(out)


def decrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    setting: str = "sm4_key",
    iv_setting: str = "sm4_iv",
    source: str = "ciphertext",
) -> bytes:
    """The plaintext of SM4 ciphertext; CryptoError naming `source` if it is not one."""
    raw_key, chain = key_bytes(key, setting), _iv(iv, mode, iv_setting)
    if not data or len(data) % BLOCK:
        raise CryptoError(source, f"SM4 ciphertext length {len(data)} is not a multiple of 16")
    clear = _blocks(raw_key, SM4_DECRYPT, data)
    if mode == "CBC":
        clear = bytes(a ^ b for a, b in zip(clear, chain + data[:-BLOCK], strict=True))
    try:
        return unpad(clear, BLOCK)
    except ValueError as err:
        raise CryptoError(source, "SM4 padding is wrong: another key, IV or mode") from err


def encrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    output: TextOut = "hex",
    setting: str = "sm4_key",
    iv_setting: str = "sm4_iv",
) -> str:
    """`text` (UTF-8) SM4-encrypted and written as `output` (lower-case hex by default)."""
    data = encrypt(to_bytes(text), key, mode=mode, iv=iv, setting=setting, iv_setting=iv_setting)
    return encode(data, output)


def decrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "ECB",
    iv: str | bytes | None = None,
    output: TextOut = "hex",
    setting: str = "sm4_key",
    iv_setting: str = "sm4_iv",
    source: str = "ciphertext",
) -> str:
    """The UTF-8 text inside SM4 ciphertext written as `output`."""
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
