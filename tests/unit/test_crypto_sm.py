"""SM2 and SM4 against the GM/T 0003.5 and GM/T 0002 (GB/T 32907) examples, every layout."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from Crypto.IO import PEM
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.crypto import sm2, sm2keys, sm4
from agent.errors import CryptoError

# GM/T 0003.5-2012 (GB/T 32918.5) appendix: the recommended curve's sign and encrypt examples
D = int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)
PUBLIC_HEX = (
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
K = int("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21", 16)
R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
C1 = (
    "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
)
C3 = "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
C2 = "21886CA989CA9C7D58087307CA93092D651EFA"
PUBLIC = bytes.fromhex(PUBLIC_HEX)


def test_public_key_of_the_standard_private_key() -> None:
    assert sm2.public_key_of(D) == PUBLIC


def test_standard_signature_with_the_default_user_id() -> None:
    signature = sm2.sign(D, b"message digest", der=False, k=K)
    assert signature.hex().upper() == R + S
    assert sm2.verify(PUBLIC, b"message digest", signature)
    der = sm2.sign(D, b"message digest", k=K)
    assert sm2keys.parse_der_signature(der) == (int(R, 16), int(S, 16))
    assert sm2.verify(PUBLIC, b"message digest", der)


def test_signatures_that_must_fail() -> None:
    good = sm2.sign(D, b"message digest")
    assert not sm2.verify(PUBLIC, b"message digesT", good)
    assert not sm2.verify(PUBLIC, b"message digest", good, user_id=b"another id")
    assert not sm2.verify(PUBLIC, b"message digest", good[:-1])
    assert not sm2.verify(PUBLIC, b"message digest", b"\0" * 64)
    assert not sm2.verify(PUBLIC, b"message digest", b"garbage")


@pytest.mark.parametrize(
    ("layout", "prefix", "expected"),
    [
        ("C1C3C2", True, "04" + C1 + C3 + C2),
        ("C1C3C2", False, C1 + C3 + C2),
        ("C1C2C3", True, "04" + C1 + C2 + C3),
        ("C1C2C3", False, C1 + C2 + C3),
    ],
)
def test_standard_encryption_in_every_layout(layout, prefix: bool, expected: str) -> None:
    cipher = sm2.encrypt(PUBLIC, b"encryption standard", layout=layout, prefix=prefix, k=K)
    assert cipher.hex().upper() == expected
    assert sm2.decrypt(D, cipher, layout=layout) == b"encryption standard"  # 04 detected
    assert sm2.decrypt(D, cipher, layout=layout, prefix=prefix) == b"encryption standard"


def test_der_form_gm_t_0009() -> None:
    cipher = sm2.encrypt(PUBLIC, b"encryption standard", der=True, k=K)
    assert sm2keys.parse_der_ciphertext(cipher, "c") == (
        bytes.fromhex(C1),
        bytes.fromhex(C3),
        bytes.fromhex(C2),
    )
    assert sm2.decrypt(D, cipher, der=True) == b"encryption standard"


@pytest.mark.parametrize("output", ["hex", "HEX", "base64"])
def test_text_forms(output) -> None:
    text = sm2.encrypt_text(PUBLIC, "330922196309015018", output=output, prefix=False)
    if output != "base64":
        assert len(text) == 2 * (64 + 32 + 18)  # sm-crypto's 228 hex digits for an ID number
    assert sm2.decrypt_text(D, text, output=output) == "330922196309015018"


@settings(max_examples=20, deadline=None)  # ~20 ms per encrypt+decrypt in pure Python
@given(
    st.binary(min_size=1, max_size=300),
    st.sampled_from(["C1C3C2", "C1C2C3"]),
    st.booleans(),
    st.booleans(),
)
def test_round_trip(data: bytes, layout, prefix: bool, der: bool) -> None:
    cipher = sm2.encrypt(PUBLIC, data, layout=layout, prefix=prefix, der=der)
    assert sm2.decrypt(D, cipher, layout=layout, der=der) == data


def test_key_forms() -> None:
    spki = sm2keys.public_key_der(PUBLIC)
    pem = PEM.encode(spki, "PUBLIC KEY")
    for text in (PUBLIC_HEX, "04" + PUBLIC_HEX.lower(), base64.b64encode(spki).decode(), pem):
        assert sm2.load_public_key(text) == PUBLIC
    assert sm2.load_public_key(base64.b64encode(b"\x04" + PUBLIC).decode()) == PUBLIC
    pkcs8 = sm2keys.private_key_der(D)
    for text in (f"{D:064x}", f"{D:064X}", base64.b64encode(pkcs8).decode()):
        assert sm2.load_private_key(text) == D
    d = sm2keys.generate_private_key()
    assert sm2keys.on_curve(sm2.public_key_of(d))


def test_a_public_key_whose_hex_starts_with_04_is_not_mangled() -> None:
    # gmssl's constructor strips every leading "0" and "4" of such a key; we never hand it one
    for d in range(1, 3000):
        public = sm2.public_key_of(d)
        if public.hex().startswith(("04", "4", "0")):
            break
    assert sm2.verify(public, b"m", sm2.sign(d, b"m"))
    assert sm2.decrypt(d, sm2.encrypt(public, b"m")) == b"m"


@pytest.mark.parametrize(
    "text",
    [
        "zz",
        "04" + "00" * 64,  # not a point of the curve
        PUBLIC_HEX[:-2],
        base64.b64encode(b"\x30\x03\x02\x01\x01").decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ],
)
def test_bad_public_keys(text: str) -> None:
    with pytest.raises(CryptoError) as info:
        sm2.load_public_key(text, "sm2_public_key")
    assert info.value.setting == "sm2_public_key"


@pytest.mark.parametrize("text", ["00" * 32, "ff" * 32, "zz" * 32, "QUJD", "-----BEGIN"])
def test_bad_private_keys(text: str) -> None:
    with pytest.raises(CryptoError) as info:
        sm2.load_private_key(text, "sm2_private_key")
    assert info.value.setting == "sm2_private_key"


def test_a_p256_key_is_not_taken_for_sm2() -> None:
    from Crypto.PublicKey import ECC

    p256 = ECC.generate(curve="P-256")
    with pytest.raises(CryptoError, match="not for the SM2 curve"):
        sm2.load_public_key(p256.public_key().export_key(format="PEM"))
    with pytest.raises(CryptoError, match="not for the SM2 curve"):
        sm2.load_private_key(p256.export_key(format="PEM"))


def test_bad_ciphertexts() -> None:
    good = sm2.encrypt(PUBLIC, b"330922196309015018")
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    cases = [
        good[:90],  # too short
        tampered,  # C3 no longer matches
        b"\x04" + b"\1" * 120,  # C1 not on the curve
        sm2.encrypt(sm2.public_key_of(D + 1), b"x"),  # another key
    ]
    for data in cases:
        with pytest.raises(CryptoError) as info:
            sm2.decrypt(D, data, source="doctorIdCardNo")
        assert info.value.setting == "doctorIdCardNo"
    with pytest.raises(CryptoError, match=r"C3 differs|curve"):
        sm2.decrypt(D, good, layout="C1C2C3")
    with pytest.raises(CryptoError, match="DER"):
        sm2.decrypt(D, good, der=True)
    with pytest.raises(CryptoError, match="not hex"):
        sm2.decrypt_text(D, "xyz")


# GB/T 32907-2016 appendix A, example 1
SM4_KEY = "0123456789abcdeffedcba9876543210"


def test_sm4_standard_example() -> None:
    block = sm4.encrypt(bytes.fromhex(SM4_KEY), SM4_KEY)[:16]  # then one block of padding
    assert block.hex() == "681edf34d206965e86b3e94f536e4246"


@given(st.binary(max_size=100), st.sampled_from(["ECB", "CBC"]))
def test_sm4_round_trip(data: bytes, mode) -> None:
    cipher = sm4.encrypt(data, SM4_KEY, mode=mode, iv=b"\1" * 16)
    assert len(cipher) == (len(data) // 16 + 1) * 16
    assert sm4.decrypt(cipher, SM4_KEY, mode=mode, iv=b"\1" * 16) == data


def test_sm4_key_forms() -> None:
    assert sm4.key_bytes(SM4_KEY) == bytes.fromhex(SM4_KEY)
    assert sm4.key_bytes("1234567890abcdef") == b"1234567890abcdef"
    key = "1234567890abcdef"
    assert sm4.decrypt_text(sm4.encrypt_text("中文", key), key) == "中文"


@pytest.mark.parametrize(
    ("call", "setting"),
    [
        (lambda: sm4.encrypt(b"x", "short"), "sm4_key"),
        (lambda: sm4.encrypt(b"x", SM4_KEY, mode="CBC"), "sm4_iv"),
        (lambda: sm4.decrypt(b"x" * 15, SM4_KEY, source="data"), "data"),
        (lambda: sm4.decrypt(sm4.encrypt(b"x", SM4_KEY), "f" * 32, source="data"), "data"),
        (lambda: sm4.decrypt_text("@@", SM4_KEY, output="base64", source="data"), "data"),
    ],
    ids=["short key", "no iv", "partial block", "wrong key", "not base64"],
)
def test_sm4_bad_input(call, setting: str) -> None:
    with pytest.raises(CryptoError) as info:
        call()
    assert info.value.setting == setting


def test_unloaded_keys_are_refused_by_name() -> None:
    calls: list[Callable[[], object]] = [
        lambda: sm2.public_key_of(0),
        lambda: sm2.sign(sm2keys.N, b"m"),
        lambda: sm2.decrypt(-1, b"\0" * 100),
    ]
    for call in calls:
        with pytest.raises(CryptoError) as info:
            call()
        assert info.value.setting == "sm2_private_key"
    with pytest.raises(CryptoError) as info:
        sm2.encrypt(b"\1" * 64, b"m", setting="insurance.sm2_public_key")
    assert info.value.setting == "insurance.sm2_public_key"
    with pytest.raises(CryptoError, match="ENTL"):
        sm2.sign(D, b"m", user_id=b"x" * 8192)
