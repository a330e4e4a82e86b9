"""Whatever a peer or a config file holds, crypto answers a value or CryptoError, nothing else."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from Crypto.IO import PEM
from Crypto.PublicKey import RSA
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.crypto import aes, des3, rsa, sm2, sm2keys, sm4
from agent.errors import CryptoError

RSA_KEY = RSA.generate(1024)
SM2_D = sm2keys.generate_private_key()

DECRYPTERS: dict[str, Callable[[str], object]] = {
    "des3": lambda text: des3.decrypt_text(text, "eWorldTomTaw#7=*"),
    "des3-ecb": lambda text: des3.decrypt_text(text, "k", mode="ECB", output="hex"),
    "aes": lambda text: aes.decrypt_text(text, "abcdef0123456789"),
    "aes-cbc": lambda text: aes.decrypt_text(text, "k" * 32, mode="CBC", iv="i" * 16),
    "rsa": lambda text: rsa.decrypt_text(RSA_KEY, text),
    "rsa-oaep": lambda text: rsa.decrypt_text(RSA_KEY, text, padding="oaep"),
    "sm2-hex": lambda text: sm2.decrypt_text(SM2_D, text),
    "sm2-c1c2c3": lambda text: sm2.decrypt_text(SM2_D, text, layout="C1C2C3", output="base64"),
    "sm2-der": lambda text: sm2.decrypt_text(SM2_D, text, der=True, output="base64"),
    "sm4": lambda text: sm4.decrypt_text(text, "0123456789abcdef"),
    "sm4-cbc": lambda text: sm4.decrypt_text(text, "0123456789abcdef", mode="CBC", iv="i" * 16),
}
LOADERS: dict[str, Callable[[str], object]] = {
    "rsa": rsa.load_key,
    "sm2-public": sm2.load_public_key,
    "sm2-private": sm2.load_private_key,
}


def _only_crypto_errors(call: Callable[[str], object], text: str) -> None:
    try:
        call(text)
    except CryptoError:
        pass


def _blocks(data: bytes) -> st.SearchStrategy[str]:
    return st.sampled_from([data.hex(), base64.b64encode(data).decode()])


garbage = st.one_of(
    st.text(),
    st.binary().map(lambda b: base64.b64encode(b).decode()),
    st.binary().map(bytes.hex),
    st.binary(min_size=97, max_size=200).map(lambda b: "04" + b.hex()),
    st.lists(st.integers(0, 2**300), min_size=1, max_size=5).map(
        lambda ns: base64.b64encode(
            bytes([0x30, 0x80]) + b"".join(n.to_bytes(40, "big") for n in ns)
        ).decode()
    ),
)


@pytest.mark.parametrize("name", sorted(DECRYPTERS))
@settings(max_examples=60, deadline=None)
@given(text=garbage)
def test_decrypters(name: str, text: str) -> None:
    _only_crypto_errors(DECRYPTERS[name], text)


pem_bodies = st.binary(max_size=300).map(
    lambda b: PEM.encode(b, "PUBLIC KEY") + "\n" + PEM.encode(b, "PRIVATE KEY")
)


@pytest.mark.parametrize("name", sorted(LOADERS))
@settings(max_examples=80, deadline=None)
@given(text=st.one_of(garbage, pem_bodies, pem_bodies.map(lambda t: t.split("\n-----END")[0])))
def test_key_loaders(name: str, text: str) -> None:
    _only_crypto_errors(LOADERS[name], text)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=80))
def test_sm2_verify_of_garbage_is_false(data: bytes, signature: bytes) -> None:
    assert sm2.verify(sm2.public_key_of(SM2_D), data, signature) in (True, False)
    assert sm2.verify(signature[:64].ljust(64, b"\0"), data, signature) is False


@given(st.text())
def test_plaintext_with_a_lone_surrogate(text: str) -> None:
    _only_crypto_errors(lambda t: des3.encrypt_text(t + "\ud800", "k"), text)
    _only_crypto_errors(lambda t: aes.encrypt_text(t, "\udc00" * 16), text)
