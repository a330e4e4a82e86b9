"""RSA PKCS#1 v1.5 (and OAEP) as Java's `RSA/ECB/PKCS1Padding`; keys in every form platforms use."""

from __future__ import annotations

import binascii
import re
from typing import Literal

from Crypto.Cipher import PKCS1_OAEP, PKCS1_v1_5
from Crypto.Hash import MD5, SHA1, SHA256
from Crypto.PublicKey import RSA
from Crypto.Signature import pkcs1_15

from agent.crypto.encoding import b64decode, b64encode, to_bytes, to_text
from agent.errors import CryptoError

Padding = Literal["pkcs1v15", "oaep"]  # Java RSA/ECB/PKCS1Padding | OAEPWithSHA-1AndMGF1Padding
Hash = Literal["MD5", "SHA1", "SHA256"]  # Java MD5withRSA | SHA1withRSA | SHA256withRSA
_HASHES = {"MD5": MD5, "SHA1": SHA1, "SHA256": SHA256}
_XML_FIELD = re.compile(r"<(\w+)>([^<]*)</\1>")
_XML_PARTS = ("Modulus", "Exponent", "D", "P", "Q")
NOT_A_KEY = "not an RSA key (PEM, Base64 DER, or .NET <RSAKeyValue> XML)"


def load_key(text: str, setting: str = "rsa_key") -> RSA.RsaKey:
    """A public or private key from PEM, Base64 DER (SPKI, PKCS#1, PKCS#8) or .NET XML."""
    text = text.strip()
    if "<RSAKeyValue>" in text:
        return _from_xml(text, setting)
    try:
        if "-----BEGIN" in text:
            return RSA.import_key(text)
        return RSA.import_key(b64decode(text, setting))
    except (ValueError, IndexError, TypeError, binascii.Error, CryptoError) as err:
        raise CryptoError(setting, NOT_A_KEY) from err


def _from_xml(text: str, setting: str) -> RSA.RsaKey:
    fields = dict(_XML_FIELD.findall(text))
    if "Modulus" not in fields or "Exponent" not in fields:
        raise CryptoError(setting, "<RSAKeyValue> without <Modulus> and <Exponent>")
    numbers = [
        int.from_bytes(b64decode(fields[name], setting), "big")
        for name in _XML_PARTS
        if name in fields
    ]
    if len(numbers) not in (2, 3, 5):
        raise CryptoError(setting, "<RSAKeyValue> has some but not all private parts")
    try:
        return RSA.construct(tuple(numbers))
    except ValueError as err:
        raise CryptoError(setting, "<RSAKeyValue> does not make a valid RSA key") from err


def public_text(key: RSA.RsaKey) -> str:
    """The public key as Base64 of its SPKI DER, the form Java platforms hand out."""
    return b64encode(key.public_key().export_key("DER"))


def block_size(key: RSA.RsaKey, padding: Padding = "pkcs1v15") -> int:
    """The most plaintext bytes one RSA block takes with this key and padding."""
    size = key.size_in_bytes()
    return size - 11 if padding == "pkcs1v15" else size - 2 * 20 - 2  # OAEP with SHA-1


def encrypt(key: RSA.RsaKey, data: bytes, *, padding: Padding = "pkcs1v15") -> bytes:
    """Ciphertext of `data`; past one block, split and concatenated as Java tools do."""
    cipher = PKCS1_v1_5.new(key) if padding == "pkcs1v15" else PKCS1_OAEP.new(key)
    step = block_size(key, padding)
    chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return b"".join(cipher.encrypt(chunk) for chunk in chunks)


def decrypt(
    key: RSA.RsaKey,
    data: bytes,
    *,
    padding: Padding = "pkcs1v15",
    setting: str = "rsa_key",
    source: str = "ciphertext",
) -> bytes:
    """Plaintext of one or more concatenated RSA blocks; CryptoError naming `source` if not."""
    if not key.has_private():
        raise CryptoError(setting, "a public key cannot decrypt; give the private key")
    size = key.size_in_bytes()
    if not data or len(data) % size:
        raise CryptoError(source, f"RSA ciphertext is not a whole number of {size}-byte blocks")
    sentinel = object()
    parts: list[bytes] = []
    for i in range(0, len(data), size):
        try:
            if padding == "pkcs1v15":
                part: object = PKCS1_v1_5.new(key).decrypt(data[i : i + size], sentinel)
            else:
                part = PKCS1_OAEP.new(key).decrypt(data[i : i + size])
        except ValueError as err:
            raise CryptoError(source, "RSA ciphertext does not decrypt with this key") from err
        if not isinstance(part, bytes):  # the sentinel: padding is wrong
            raise CryptoError(source, "RSA ciphertext does not decrypt with this key")
        parts.append(part)
    return b"".join(parts)


def encrypt_text(key: RSA.RsaKey, text: str, *, padding: Padding = "pkcs1v15") -> str:
    """Base64 (one line) of the ciphertext of `text` as UTF-8."""
    return b64encode(encrypt(key, to_bytes(text), padding=padding))


def decrypt_text(
    key: RSA.RsaKey,
    text: str,
    *,
    padding: Padding = "pkcs1v15",
    setting: str = "rsa_key",
    source: str = "ciphertext",
) -> str:
    """The UTF-8 text inside Base64 RSA ciphertext."""
    data = decrypt(key, b64decode(text, source), padding=padding, setting=setting, source=source)
    return to_text(data, source)


def sign(key: RSA.RsaKey, data: bytes, *, hash: Hash = "SHA256", setting: str = "rsa_key") -> bytes:
    """PKCS#1 v1.5 signature of `data` (Java `<hash>withRSA`)."""
    if not key.has_private():
        raise CryptoError(setting, "a public key cannot sign; give the private key")
    return bytes(pkcs1_15.new(key).sign(_HASHES[hash].new(data)))


def verify(key: RSA.RsaKey, data: bytes, signature: bytes, *, hash: Hash = "SHA256") -> bool:
    """Whether `signature` is the PKCS#1 v1.5 signature of `data` under `key`."""
    try:
        pkcs1_15.new(key).verify(_HASHES[hash].new(data), signature)
    except (ValueError, TypeError):
        return False
    return True
