"""SM2 keys (hex, Base64, PEM: SPKI, PKCS#8, SEC1) and the DER forms of GM/T 0009."""

from __future__ import annotations

import re
import secrets

from Crypto.IO import PEM
from Crypto.Util.asn1 import DerBitString, DerObjectId, DerOctetString, DerSequence

from agent.crypto.encoding import b64decode, hexdecode
from agent.errors import CryptoError

# sm2p256v1, GM/T 0003.5 (GB/T 32918.5) recommended curve
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
SM2_CURVE_OID = "1.2.156.10197.1.301"
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def on_curve(point: bytes) -> bool:
    """Whether 64 bytes X‖Y are a point of the SM2 curve."""
    if len(point) != 64:
        return False
    x, y = int.from_bytes(point[:32], "big"), int.from_bytes(point[32:], "big")
    return x < P and y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def generate_private_key() -> int:
    """A fresh private key d in [1, n-2]."""
    return secrets.randbelow(N - 2) + 1


def _point(raw: bytes, setting: str) -> bytes:
    if len(raw) == 65 and raw[0] == 4:
        raw = raw[1:]
    if not on_curve(raw):
        raise CryptoError(setting, "not a point of the SM2 curve (hex X‖Y, 04‖X‖Y, or SPKI)")
    return raw


def _spki_point(der: bytes, setting: str) -> bytes:
    try:
        spki = DerSequence().decode(der, nr_elements=2)
        algorithm = DerSequence().decode(spki[0])
        oids = [DerObjectId().decode(algorithm[i]).value for i in range(len(algorithm))]
        bits = DerBitString().decode(spki[1]).value
    except (ValueError, TypeError, IndexError) as err:
        raise CryptoError(setting, "not an SM2 public key (hex, Base64 or PEM SPKI)") from err
    if SM2_CURVE_OID not in oids:
        raise CryptoError(setting, "a public key, but not for the SM2 curve")
    return _point(bytes(bits), setting)


def load_public_key(text: str, setting: str = "sm2_public_key") -> bytes:
    """The public key as 64 bytes X‖Y, from hex (with or without 04), Base64 or PEM SPKI."""
    text = text.strip()
    if "-----BEGIN" in text:
        try:
            der, _, _ = PEM.decode(text)
        except ValueError as err:
            raise CryptoError(setting, "not a PEM public key") from err
        return _spki_point(der, setting)
    if _HEX.match(text) and len(text) in (128, 130):
        return _point(hexdecode(text, setting), setting)
    raw = b64decode(text, setting)
    return _point(raw, setting) if len(raw) in (64, 65) else _spki_point(raw, setting)


def _sec1_scalar(der: bytes) -> int:
    sec1 = DerSequence().decode(der)
    if sec1[0] != 1:
        raise ValueError("not SEC1 version 1")
    return int.from_bytes(DerOctetString().decode(sec1[1]).payload, "big")


def _der_scalar(der: bytes, setting: str) -> int:
    try:
        outer = DerSequence().decode(der)
        if len(outer) >= 3 and outer[0] == 0:  # PKCS#8 PrivateKeyInfo
            algorithm = DerSequence().decode(outer[1])
            oids = [DerObjectId().decode(algorithm[i]).value for i in range(len(algorithm))]
            if SM2_CURVE_OID not in oids:
                raise CryptoError(setting, "a private key, but not for the SM2 curve")
            return _sec1_scalar(DerOctetString().decode(outer[2]).payload)
        return _sec1_scalar(der)
    except (ValueError, TypeError, IndexError) as err:
        raise CryptoError(setting, "not an SM2 private key (hex, PKCS#8 or SEC1)") from err


def load_private_key(text: str, setting: str = "sm2_private_key") -> int:
    """The private key d, from 64 hex digits, or PKCS#8/SEC1 as PEM or Base64 DER."""
    text = text.strip()
    if "-----BEGIN" in text:
        if "ENCRYPTED" in text or "Proc-Type" in text:
            raise CryptoError(setting, "an encrypted private key; give it without a passphrase")
        try:
            der, _, _ = PEM.decode(text)
        except ValueError as err:
            raise CryptoError(setting, "not a PEM private key") from err
        d = _der_scalar(der, setting)
    elif _HEX.match(text) and len(text) == 64:
        d = int(text, 16)
    else:
        d = _der_scalar(b64decode(text, setting), setting)
    if not 0 < d < N - 1:
        raise CryptoError(setting, "out of range for an SM2 private key")
    return d


def public_key_der(public: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key (64 bytes X‖Y), as OpenSSL writes it."""
    algorithm = DerSequence([DerObjectId(EC_PUBLIC_KEY_OID), DerObjectId(SM2_CURVE_OID)])
    return bytes(DerSequence([algorithm, DerBitString(b"\x04" + public)]).encode())


def private_key_der(private: int) -> bytes:
    """PKCS#8 DER of a private key (without its public part), as OpenSSL reads it."""
    algorithm = DerSequence([DerObjectId(EC_PUBLIC_KEY_OID), DerObjectId(SM2_CURVE_OID)])
    sec1 = DerSequence([1, DerOctetString(private.to_bytes(32, "big"))]).encode()
    return bytes(DerSequence([0, algorithm, DerOctetString(sec1)]).encode())


def der_ciphertext(c1: bytes, c3: bytes, c2: bytes) -> bytes:
    """GM/T 0009 SM2Cipher: SEQUENCE{x INTEGER, y INTEGER, hash OCTET STRING, cipher OCTET STR}."""
    x, y = int.from_bytes(c1[:32], "big"), int.from_bytes(c1[32:], "big")
    return bytes(DerSequence([x, y, DerOctetString(c3), DerOctetString(c2)]).encode())


def parse_der_ciphertext(data: bytes, source: str) -> tuple[bytes, bytes, bytes]:
    """(C1, C3, C2) of a GM/T 0009 SM2Cipher."""
    try:
        seq = DerSequence().decode(data, nr_elements=4)
        x, y = int(seq[0]), int(seq[1])
        c3 = DerOctetString().decode(seq[2]).payload
        c2 = DerOctetString().decode(seq[3]).payload
        c1 = x.to_bytes(32, "big") + y.to_bytes(32, "big")
    except (ValueError, TypeError, IndexError, OverflowError) as err:
        raise CryptoError(source, "not DER SM2 ciphertext (GM/T 0009)") from err
    if len(c3) != 32 or not c2:
        raise CryptoError(source, "not DER SM2 ciphertext (GM/T 0009)")
    return c1, bytes(c3), bytes(c2)


def der_signature(r: int, s: int) -> bytes:
    """SEQUENCE{r INTEGER, s INTEGER}."""
    return bytes(DerSequence([r, s]).encode())


def parse_der_signature(data: bytes) -> tuple[int, int] | None:
    """(r, s) of a DER signature, None if it is not one."""
    try:
        seq = DerSequence().decode(data, nr_elements=2, only_ints_expected=True)
        return int(seq[0]), int(seq[1])
    except (ValueError, TypeError, IndexError):
        return None
