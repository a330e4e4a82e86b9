"""Interop with a real peer: what the agent encrypts or signs, OpenSSL 3 reads, and the reverse."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from Crypto.IO import PEM
from Crypto.PublicKey import RSA

from agent.crypto import aes, des3, digest, rsa, sm2, sm2keys, sm4
from tests.peers import required_tool

MESSAGE = "330922196309015018 张医生".encode()


@pytest.fixture
def openssl(tmp_path: Path):
    """Run `openssl` in tmp_path; returns its stdout."""
    tool = required_tool("openssl", "openssl")

    def run(*args: str, data: bytes = b"") -> bytes:
        done = subprocess.run(
            [tool, *args], cwd=tmp_path, input=data, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout

    return run


@pytest.fixture
def sm2_pair(openssl, tmp_path: Path) -> tuple[int, bytes]:
    """A key pair made by OpenSSL (priv.pem, pub.pem in tmp_path), as the agent loads it."""
    openssl("genpkey", "-algorithm", "SM2", "-out", "priv.pem")
    openssl("pkey", "-in", "priv.pem", "-pubout", "-out", "pub.pem")
    private = sm2.load_private_key((tmp_path / "priv.pem").read_text())
    public = sm2.load_public_key((tmp_path / "pub.pem").read_text())
    assert sm2.public_key_of(private) == public
    return private, public


def test_sm2_agent_encrypts_openssl_decrypts(openssl, sm2_pair, tmp_path: Path) -> None:
    _, public = sm2_pair
    (tmp_path / "c.der").write_bytes(sm2.encrypt(public, MESSAGE, der=True))
    assert openssl("pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "c.der") == MESSAGE


def test_sm2_openssl_encrypts_agent_decrypts(openssl, sm2_pair) -> None:
    private, _ = sm2_pair
    cipher = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", data=MESSAGE)
    assert sm2.decrypt(private, cipher, der=True) == MESSAGE
    # the same ciphertext re-laid as raw C1C3C2 with 04 (GM/T 0003) decrypts too
    c1, c3, c2 = sm2keys.parse_der_ciphertext(cipher, "c")
    assert sm2.decrypt(private, b"\x04" + c1 + c3 + c2) == MESSAGE


def test_sm2_keys_made_by_the_agent_are_read_by_openssl(openssl, tmp_path: Path) -> None:
    private = sm2keys.generate_private_key()
    pem = PEM.encode(sm2keys.private_key_der(private), "PRIVATE KEY")
    (tmp_path / "mine.pem").write_text(pem)
    spki = openssl("pkey", "-in", "mine.pem", "-pubout", "-outform", "DER")
    assert spki == sm2keys.public_key_der(sm2.public_key_of(private))


def test_sm2_signatures_both_ways_with_the_default_user_id(
    openssl, sm2_pair, tmp_path: Path
) -> None:
    private, public = sm2_pair
    (tmp_path / "m").write_bytes(MESSAGE)
    (tmp_path / "agent.sig").write_bytes(sm2.sign(private, MESSAGE))
    distid = ("-pkeyopt", "distid:1234567812345678")
    out = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
        *distid, "-in", "m", "-sigfile", "agent.sig",
    )  # fmt: skip
    assert b"Verified Successfully" in out
    signed = openssl(
        "pkeyutl", "-sign", "-inkey", "priv.pem", "-rawin", "-digest", "sm3", *distid, "-in", "m"
    )
    assert sm2.verify(public, MESSAGE, signed)


def test_openssl_cli_signs_with_an_empty_user_id_by_default(openssl, sm2_pair) -> None:
    # OpenSSL 3.0's pkeyutl/dgst use an empty SM2 ID unless given distid: a trap at onboarding
    _, public = sm2_pair
    signed = openssl("dgst", "-sm3", "-sign", "priv.pem", data=MESSAGE)
    assert not sm2.verify(public, MESSAGE, signed)
    assert sm2.verify(public, MESSAGE, signed, user_id=b"")


@pytest.mark.parametrize("mode", ["cbc", "ecb"])
def test_sm4_both_directions(openssl, mode: str) -> None:
    key, iv = "0123456789abcdeffedcba9876543210", "00112233445566778899aabbccddeeff"
    args = ["enc", f"-sm4-{mode}", "-K", key] + (["-iv", iv] if mode == "cbc" else [])
    upper = mode.upper()
    theirs = openssl(*args, data=MESSAGE)
    assert theirs == sm4.encrypt(MESSAGE, key, mode=upper, iv=iv)  # type: ignore[arg-type]
    ours = sm4.encrypt(MESSAGE * 3, key, mode=upper, iv=iv)  # type: ignore[arg-type]
    assert openssl(*args, "-d", data=ours) == MESSAGE * 3


def test_sm3_and_hmac_sm3(openssl) -> None:
    assert openssl("dgst", "-sm3", "-r", data=MESSAGE).split()[0].decode() == (
        digest.hexdigest("sm3", MESSAGE)
    )
    out = openssl("dgst", "-sm3", "-hmac", "secret key", "-r", data=MESSAGE)
    assert out.split()[0].decode() == digest.hmac_hex("sm3", "secret key", MESSAGE)


def test_rsa_both_directions_and_signatures(openssl, tmp_path: Path) -> None:
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem")
    openssl("pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub")
    private = rsa.load_key((tmp_path / "rsa.pem").read_text())
    public = rsa.load_key((tmp_path / "rsa.pub").read_text())
    (tmp_path / "c").write_bytes(rsa.encrypt(public, MESSAGE))
    assert openssl("pkeyutl", "-decrypt", "-inkey", "rsa.pem", "-in", "c") == MESSAGE
    theirs = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", "rsa.pub", data=MESSAGE)
    assert rsa.decrypt(private, theirs) == MESSAGE
    # PKCS#1 v1.5 signatures are deterministic: byte-identical to OpenSSL's
    assert openssl("dgst", "-sha256", "-sign", "rsa.pem", data=MESSAGE) == rsa.sign(
        private, MESSAGE
    )


def test_rsa_key_as_openssl_writes_it_in_base64_der(openssl) -> None:
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "k.pem")
    der = openssl("pkey", "-in", "k.pem", "-pubout", "-outform", "DER")
    key = rsa.load_key(base64.b64encode(der).decode())
    assert isinstance(key, RSA.RsaKey) and not key.has_private()


def test_aes_both_directions(openssl) -> None:
    key, iv = "abcdef0123456789", "0123456789abcdef"
    hex_key, hex_iv = key.encode().hex(), iv.encode().hex()
    theirs = openssl("enc", "-aes-128-cbc", "-K", hex_key, "-iv", hex_iv, "-a", data=MESSAGE)
    assert aes.decrypt_text(theirs.decode(), key, mode="CBC", iv=iv).encode() == MESSAGE
    ours = aes.encrypt_text(MESSAGE.decode() * 5, key, output="mime")
    back = openssl("enc", "-d", "-aes-128-ecb", "-K", hex_key, data=base64.b64decode(ours))
    assert back == MESSAGE * 5


@pytest.mark.parametrize("key", ["eWorldTomTaw#7=*", "short"])
def test_3des_both_directions(openssl, key: str) -> None:
    # "short" zero-pads to K2 == K3: OpenSSL runs it as 3DES, the agent as single DES
    hex_key, hex_iv = des3.key_bytes(key).hex(), b"TomTaw#7".hex()
    theirs = openssl("enc", "-des-ede3-cbc", "-K", hex_key, "-iv", hex_iv, data=MESSAGE)
    assert theirs == des3.encrypt(MESSAGE, key)
    ours = des3.encrypt(MESSAGE * 3, key)
    assert openssl("enc", "-d", "-des-ede3-cbc", "-K", hex_key, "-iv", hex_iv, data=ours) == (
        MESSAGE * 3
    )
