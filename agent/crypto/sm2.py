"""SM2 (GM/T 0003) public-key encryption and signatures on the recommended curve sm2p256v1.

gmssl does the curve arithmetic. Its own `encrypt`/`sign_with_sm3` draw the ephemeral k from
`random.choice` (not a CSPRNG), its `decrypt` never checks C3 and its constructor mangles public
keys whose hex begins with 0 or 4: so k comes from `secrets`, and layouts, checks and Z are here.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Literal

from gmssl.sm2 import CryptSM2

from agent.crypto.digest import digest
from agent.crypto.encoding import TextOut, decode, encode, to_bytes, to_text
from agent.crypto.sm2keys import (
    GX,
    GY,
    A,
    B,
    N,
    der_ciphertext,
    der_signature,
    load_private_key,
    load_public_key,
    on_curve,
    parse_der_ciphertext,
    parse_der_signature,
)
from agent.errors import CryptoError

__all__ = [
    "DEFAULT_USER_ID",
    "Layout",
    "decrypt",
    "decrypt_text",
    "encrypt",
    "encrypt_text",
    "load_private_key",
    "load_public_key",
    "public_key_of",
    "sign",
    "verify",
]

Layout = Literal["C1C3C2", "C1C2C3"]  # GM/T 0003-2012 | the 2010 draft (old BouncyCastle)
DEFAULT_USER_ID = b"1234567812345678"
_G = GX.to_bytes(32, "big") + GY.to_bytes(32, "big")


def _curve(private: int = 0) -> CryptSM2:
    return CryptSM2(private_key=f"{private:064x}", public_key="", mode=1)


def _multiply(k: int, point: bytes) -> bytes:
    """k·point (64 bytes X‖Y in, 64 bytes out)."""
    result = _curve()._kg(k, point.hex())
    if result is None:  # the point at infinity: only for a point outside the group
        raise ValueError("point at infinity")
    return bytes.fromhex(result)


def public_key_of(private: int, setting: str = "sm2_private_key") -> bytes:
    """The public key (64 bytes X‖Y) of a private key."""
    _check_private(private, setting)
    return _multiply(private, _G)


def _kdf(z: bytes, length: int) -> bytes:
    out = b"".join(
        digest("sm3", z + counter.to_bytes(4, "big")) for counter in range(1, length // 32 + 2)
    )
    return out[:length]


def encrypt(
    public: bytes,
    data: bytes,
    *,
    layout: Layout = "C1C3C2",
    prefix: bool = True,
    der: bool = False,
    k: int | None = None,
    setting: str = "sm2_public_key",
) -> bytes:
    """SM2 ciphertext of `data`: raw C1‖C3‖C2 (C1 with `04` if `prefix`), or GM/T 0009 DER."""
    if not on_curve(public):
        raise CryptoError(setting, "not an SM2 public key; load it with load_public_key")
    if not data:
        raise CryptoError("plaintext", "SM2 cannot encrypt an empty message")
    while True:
        nonce = k if k is not None else secrets.randbelow(N - 1) + 1
        c1 = _multiply(nonce, _G)
        shared = _multiply(nonce, public)
        mask = _kdf(shared, len(data))
        if any(mask):
            break
        if k is not None:
            raise CryptoError("k", "this k gives an all-zero key stream")
    c2 = bytes(a ^ b for a, b in zip(data, mask, strict=True))
    c3 = digest("sm3", shared[:32] + data + shared[32:])
    if der:
        return der_ciphertext(c1, c3, c2)
    head = b"\x04" + c1 if prefix else c1
    return head + (c3 + c2 if layout == "C1C3C2" else c2 + c3)


def _split(data: bytes, layout: Layout, prefix: bool | None, source: str) -> tuple[bytes, ...]:
    if prefix is None:  # the point C1 tells whether a 04 precedes it
        prefix = data[:1] == b"\x04" and len(data) > 97 and on_curve(data[1:65])
    body = data[1:] if prefix else data
    if len(body) <= 96:
        raise CryptoError(source, "too short for SM2 ciphertext")
    c1, rest = body[:64], body[64:]
    if layout == "C1C3C2":
        return c1, rest[:32], rest[32:]
    return c1, rest[-32:], rest[:-32]


def decrypt(
    private: int,
    data: bytes,
    *,
    layout: Layout = "C1C3C2",
    prefix: bool | None = None,
    der: bool = False,
    setting: str = "sm2_private_key",
    source: str = "ciphertext",
) -> bytes:
    """The plaintext of SM2 ciphertext (C1's `04` detected unless `prefix` says); checks C3."""
    _check_private(private, setting)
    if der:
        c1, c3, c2 = parse_der_ciphertext(data, source)
    else:
        c1, c3, c2 = _split(data, layout, prefix, source)
    if not on_curve(c1):
        raise CryptoError(source, "SM2 ciphertext: C1 is not a point of the curve (layout?)")
    try:
        shared = _multiply(private, c1)
    except ValueError as err:
        raise CryptoError(source, "SM2 ciphertext: C1 is not usable") from err
    mask = _kdf(shared, len(c2))
    if not any(mask):
        raise CryptoError(source, "SM2 ciphertext: all-zero key stream")
    clear = bytes(a ^ b for a, b in zip(c2, mask, strict=True))
    if not hmac.compare_digest(digest("sm3", shared[:32] + clear + shared[32:]), c3):
        raise CryptoError(source, "SM2 ciphertext does not decrypt with this key (C3 differs)")
    return clear


def encrypt_text(
    public: bytes,
    text: str,
    *,
    layout: Layout = "C1C3C2",
    prefix: bool = True,
    der: bool = False,
    output: TextOut = "hex",
) -> str:
    """`text` (UTF-8) SM2-encrypted and written as `output` (lower-case hex by default)."""
    data = encrypt(public, to_bytes(text), layout=layout, prefix=prefix, der=der)
    return encode(data, output)


def decrypt_text(
    private: int,
    text: str,
    *,
    layout: Layout = "C1C3C2",
    prefix: bool | None = None,
    der: bool = False,
    output: TextOut = "hex",
    source: str = "ciphertext",
) -> str:
    """The UTF-8 text inside SM2 ciphertext written as `output`."""
    data = decode(text, output, source)
    clear = decrypt(private, data, layout=layout, prefix=prefix, der=der, source=source)
    return to_text(clear, source)


def _check_private(private: int, setting: str) -> None:
    if not 0 < private < N - 1:
        raise CryptoError(setting, "out of range for an SM2 private key")


def _e(public: bytes, data: bytes, user_id: bytes) -> bytes:
    """SM3(Z‖M), Z = SM3(ENTL‖ID‖a‖b‖xG‖yG‖xA‖yA) (GM/T 0003.2 §5.5)."""
    if len(user_id) >= 8192:
        raise CryptoError("user_id", "longer than the 65535 bits ENTL can state")
    entl = (len(user_id) * 8).to_bytes(2, "big")
    curve = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))
    z = digest("sm3", entl + user_id + curve + public)
    return digest("sm3", z + data)


def sign(
    private: int,
    data: bytes,
    *,
    user_id: bytes = DEFAULT_USER_ID,
    der: bool = True,
    k: int | None = None,
    setting: str = "sm2_private_key",
) -> bytes:
    """SM3withSM2 signature of `data`: DER SEQUENCE{r, s} (Java, OpenSSL) or raw r‖s."""
    _check_private(private, setting)
    e = _e(public_key_of(private, setting), data, user_id)
    curve = _curve(private)
    while True:
        nonce = k if k is not None else secrets.randbelow(N - 1) + 1
        raw = curve.sign(e, f"{nonce:064x}")
        if raw is not None:
            break
        if k is not None:
            raise CryptoError("k", "this k gives r = 0 or s = 0")
    r, s = int(raw[:64], 16), int(raw[64:], 16)
    if der:
        return der_signature(r, s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(
    public: bytes,
    data: bytes,
    signature: bytes,
    *,
    user_id: bytes = DEFAULT_USER_ID,
    der: bool | None = None,
) -> bool:
    """Whether `signature` (DER, or raw r‖s of 64 bytes, detected unless `der` says) is valid."""
    if der is None:
        der = len(signature) != 64
    if der:
        pair = parse_der_signature(signature)
        if pair is None:
            return False
        r, s = pair
    elif len(signature) == 64:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    else:
        return False
    if not (0 < r < N and 0 < s < N) or not on_curve(public):
        return False
    curve = _curve()
    curve.public_key = public.hex()
    try:
        return bool(curve.verify(f"{r:064x}{s:064x}", _e(public, data, user_id)))
    except (TypeError, ValueError):  # s·G + t·P at infinity: gmssl cannot say, it is no match
        return False
