"""RSA: every key form the platforms hand out, Java's block splitting, PKCS#1 v1.5 signatures."""

from __future__ import annotations

import base64

import pytest
from Crypto.Cipher import PKCS1_v1_5
from Crypto.PublicKey import RSA

from agent.crypto import rsa
from agent.errors import CryptoError


@pytest.fixture(scope="module")
def key() -> RSA.RsaKey:
    return RSA.generate(1024)


def _b64(number: int) -> str:
    return base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).decode()


def _xml(key: RSA.RsaKey, private: bool) -> str:
    parts = f"<Modulus>{_b64(key.n)}</Modulus>\n  <Exponent>{_b64(key.e)}</Exponent>"
    if private:  # .NET ToXmlString(true) also writes DP, DQ and InverseQ: ignored
        parts += f"<P>{_b64(key.p)}</P><Q>{_b64(key.q)}</Q><DP>AQ==</DP><D>{_b64(key.d)}</D>"
    return f"<RSAKeyValue>\n  {parts}\n</RSAKeyValue>"


def test_every_public_key_form(key: RSA.RsaKey) -> None:
    public = key.public_key()
    forms = [
        public.export_key("PEM").decode(),  # -----BEGIN PUBLIC KEY----- (SPKI)
        public.export_key("PEM", pkcs=1).decode(),
        base64.b64encode(public.export_key("DER")).decode(),  # Java's getEncoded()
        base64.encodebytes(public.export_key("DER")).decode(),  # wrapped, with a newline
        rsa.public_text(key),
        _xml(key, private=False),
    ]
    for text in forms:
        loaded = rsa.load_key(text)
        assert (loaded.n, loaded.e, loaded.has_private()) == (key.n, key.e, False), text[:30]


def test_every_private_key_form(key: RSA.RsaKey) -> None:
    forms = [
        key.export_key("PEM").decode(),  # -----BEGIN RSA PRIVATE KEY----- (PKCS#1)
        key.export_key("PEM", pkcs=8).decode(),
        base64.b64encode(key.export_key("DER", pkcs=1)).decode(),
        base64.b64encode(key.export_key("DER", pkcs=8)).decode(),
        _xml(key, private=True),
    ]
    for text in forms:
        assert rsa.load_key(text).d == key.d, text[:30]


def test_long_plaintext_is_split_as_java_does(key: RSA.RsaKey) -> None:
    # Java's RSAUtil loops over MAX_ENCRYPT_BLOCK = k - 11 bytes and concatenates the blocks
    data = bytes(range(256)) + b"x" * 44
    cipher = rsa.encrypt(key.public_key(), data)
    assert len(cipher) == 3 * 128
    blocks = [PKCS1_v1_5.new(key).decrypt(cipher[i : i + 128], None) for i in (0, 128, 256)]
    assert blocks == [data[:117], data[117:234], data[234:]]
    assert rsa.decrypt(key, cipher) == data


@pytest.mark.parametrize("padding", ["pkcs1v15", "oaep"])
def test_text_round_trip(key: RSA.RsaKey, padding) -> None:
    text = "appId,orgId,许可证" * 20
    cipher = rsa.encrypt_text(key.public_key(), text, padding=padding)
    assert rsa.decrypt_text(key, cipher, padding=padding) == text
    assert rsa.block_size(key, padding) == (117 if padding == "pkcs1v15" else 86)


@pytest.mark.parametrize("hash_name", ["MD5", "SHA1", "SHA256"])
def test_sign_and_verify(key: RSA.RsaKey, hash_name) -> None:
    signature = rsa.sign(key, b"message", hash=hash_name)
    assert rsa.verify(key.public_key(), b"message", signature, hash=hash_name)
    assert not rsa.verify(key.public_key(), b"messagE", signature, hash=hash_name)
    assert not rsa.verify(key.public_key(), b"message", signature[:-1], hash=hash_name)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not a key", "not an RSA key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not an RSA key"),
        ("QUJD", "not an RSA key"),
        ("<RSAKeyValue><Modulus>AQ==</Modulus></RSAKeyValue>", "without <Modulus> and <Exponent>"),
        ("<RSAKeyValue><Modulus>AQ==</Modulus><Exponent>@</Exponent></RSAKeyValue>", "Base64"),
    ],
)
def test_bad_keys_raise_crypto_error(text: str, reason: str) -> None:
    with pytest.raises(CryptoError, match=reason) as info:
        rsa.load_key(text, "public_key")
    assert info.value.setting == "public_key"


def test_bad_ciphertexts_and_wrong_key_kinds(key: RSA.RsaKey) -> None:
    other = RSA.generate(1024)
    cipher = rsa.encrypt_text(key.public_key(), "secret")
    cases = [
        (lambda: rsa.decrypt_text(other, cipher, source="password"), "password"),
        (lambda: rsa.decrypt_text(key, "AAAA", source="password"), "password"),
        (lambda: rsa.decrypt_text(key, "!!", source="password"), "password"),
        (lambda: rsa.decrypt_text(key, cipher, padding="oaep", source="password"), "password"),
        (lambda: rsa.decrypt_text(key.public_key(), cipher, setting="sev_key"), "sev_key"),
        (lambda: rsa.sign(key.public_key(), b"x", setting="sev_key"), "sev_key"),
    ]
    for call, setting in cases:
        with pytest.raises(CryptoError) as info:
            call()  # type: ignore[no-untyped-call]
        assert info.value.setting == setting
