"""3DES-EDE (CBC/ECB, PKCS#7) as seed 002 uses it: key text zero-padded to 24 bytes, Base64."""

from __future__ import annotations

import functools
from typing import Any, Literal

from Crypto.Cipher import DES, DES3
from Crypto.Util.Padding import pad, unpad

from agent.crypto.encoding import TextOut, decode, encode, to_bytes, to_text
from agent.errors import CryptoError

Mode = Literal["CBC", "ECB"]
KEY_SIZE = 24
BLOCK = 8
SHORT = 6 * BLOCK  # bytes CBC-encrypted block by block over a kept cipher (H5 values, dates)
SEED_002_IV = "TomTaw#7"  # recovered from seed 002's examples; the seed never states it


def key_bytes(key: str | bytes, setting: str = "des_key") -> bytes:
    """The 24-byte key: UTF-8 key text right-padded with zero bytes, longer keys truncated."""
    raw = to_bytes(key, setting)
    if not raw:
        raise CryptoError(setting, "the 3DES key is empty")
    return raw[:KEY_SIZE].ljust(KEY_SIZE, b"\0")


def _iv(iv: str | bytes | None, mode: Mode, setting: str) -> bytes:
    if mode == "ECB":
        return b""
    raw = to_bytes(iv, setting) if iv is not None else b""
    if len(raw) != BLOCK:
        raise CryptoError(setting, f"the 3DES-CBC IV must be {BLOCK} bytes, not {len(raw)}")
    return raw


@functools.lru_cache(maxsize=64)
def _scheme(key: bytes) -> tuple[Any, bytes]:
    """(DES3, key), or (DES, the one key) where the key degenerates (which DES3 refuses)."""
    k1, k2, k3 = (bytes(b & 0xFE for b in key[i : i + BLOCK]) for i in (0, 8, 16))
    if k1 == k2:  # E_K3(D_K2(E_K1 x)) = E_K3 x
        return DES, key[16:24]
    if k2 == k3:  # = E_K1 x; e.g. any key text of at most 8 bytes
        return DES, key[0:8]
    return DES3, key


@functools.lru_cache(maxsize=64)
def _block_cipher(key: bytes) -> Any:
    """The key's ECB cipher: stateless, so one per key is kept (its key schedule costs most)."""
    module, raw = _scheme(key)
    return module.new(raw, module.MODE_ECB)


def _cipher(key: bytes, mode: Mode, iv: bytes) -> Any:
    """A DES3 cipher, or single DES where the key degenerates."""
    module, raw = _scheme(key)
    if mode == "CBC":
        return module.new(raw, module.MODE_CBC, iv=iv)
    return module.new(raw, module.MODE_ECB)


def _cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC over the kept ECB cipher, C_i = E(P_i xor C_i-1) with C_0 = IV, for short data (one
    call a block); longer data through a new CBC cipher (its key schedule then costs less)."""
    if len(data) > SHORT:
        return bytes(_cipher(key, "CBC", iv).encrypt(data))
    ecb = _block_cipher(key)
    out = bytearray()
    previous = int.from_bytes(iv, "big")
    for i in range(0, len(data), BLOCK):
        block = (int.from_bytes(data[i : i + BLOCK], "big") ^ previous).to_bytes(BLOCK, "big")
        encrypted = ecb.encrypt(block)
        previous = int.from_bytes(encrypted, "big")
        out += encrypted
    return bytes(out)


def encrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "CBC",
    iv: str | bytes | None = SEED_002_IV,
    setting: str = "des_key",
    iv_setting: str = "des_iv",
) -> bytes:
    """3DES-EDE ciphertext of `data` padded with PKCS#7."""
    raw, vector = key_bytes(key, setting), _iv(iv, mode, iv_setting)
    if mode == "CBC":
        return _cbc_encrypt(raw, vector, pad(data, BLOCK))
    return bytes(_block_cipher(raw).encrypt(pad(data, BLOCK)))


def decrypt(
    data: bytes,
    key: str | bytes,
    *,
    mode: Mode = "CBC",
    iv: str | bytes | None = SEED_002_IV,
    setting: str = "des_key",
    iv_setting: str = "des_iv",
    source: str = "ciphertext",
) -> bytes:
    """The plaintext of a 3DES-EDE ciphertext; CryptoError naming `source` if it is not one."""
    cipher = _cipher(key_bytes(key, setting), mode, _iv(iv, mode, iv_setting))
    if not data or len(data) % BLOCK:
        raise CryptoError(source, f"3DES ciphertext length {len(data)} is not a multiple of 8")
    try:
        return unpad(cipher.decrypt(data), BLOCK)
    except ValueError as err:
        raise CryptoError(source, "3DES padding is wrong: another key, IV or mode") from err


def recover_iv(
    plaintext: bytes, ciphertext: bytes, key: str | bytes, setting: str = "des_key"
) -> bytes:
    """The CBC IV of a known pair: D_K(C1) xor P1 (how seed 002's unstated IV was found)."""
    if len(plaintext) < BLOCK or len(ciphertext) < BLOCK:
        raise CryptoError("sample", "the pair needs at least one whole 8-byte block")
    first = _cipher(key_bytes(key, setting), "ECB", b"").decrypt(ciphertext[:BLOCK])
    return bytes(a ^ b for a, b in zip(first, plaintext[:BLOCK], strict=True))


def encrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "CBC",
    iv: str | bytes | None = SEED_002_IV,
    output: TextOut = "base64",
    setting: str = "des_key",
    iv_setting: str = "des_iv",
) -> str:
    """`text` (UTF-8) encrypted and written as `output` (Base64 by default)."""
    data = encrypt(to_bytes(text), key, mode=mode, iv=iv, setting=setting, iv_setting=iv_setting)
    return encode(data, output)


def decrypt_text(
    text: str,
    key: str | bytes,
    *,
    mode: Mode = "CBC",
    iv: str | bytes | None = SEED_002_IV,
    output: TextOut = "base64",
    setting: str = "des_key",
    iv_setting: str = "des_iv",
    source: str = "ciphertext",
) -> str:
    """The UTF-8 text inside a ciphertext written as `output`."""
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
