"""3DES against every ciphertext and sign of seed 002 (platforms/idcas_archive-brief.md §7)."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.crypto import des3
from agent.crypto.digest import hexdigest
from agent.errors import CryptoError

KEY = "eWorldTomTaw#7=*"  # seed 002 附录 TripleDes 测试秘钥
MD5_KEY = "TomtawMD5Key"  # seed 002 附录 MD5 测试秘钥

V1_JSON = (
    '{"work_no":"001","org_code":"2470","med_rec_no":"","visit_id":"",'
    '"accession_number":"SD-53242","id_card_no":"","patient_name":"","placer_order_no":""}'
)
V1_TOKEN = (
    "R8DHV1doOCP2q3ymxuQZxI2apra5vgW2GM1XKWVsu/KXaetkL2MLjfw4h6mY2A/7JT75uZ4Q9V9Zp5xltSTIGjnnBWG/"
    "yImKpW8rNelp+qwEoupCuBbF5QC4sWL4fOVYqbJ0lX/TM1htLm8D4Yn694HViUGRJn/daPaQeyGv/9DLCmdotwYE2AL"
    "ctnDsf7Q49h+pGVHAPH0="
)
V1_URL_ENCODED = (
    "R8DHV1doOCP2q3ymxuQZxI2apra5vgW2GM1XKWVsu%2FKXaetkL2MLjfw4h6mY2A%2F7JT75uZ4Q9V9Zp5xltSTIGjnn"
    "BWG%2FyImKpW8rNelp%2BqwEoupCuBbF5QC4sWL4fOVYqbJ0lX%2FTM1htLm8D4Yn694HViUGRJn%2FdaPaQeyGv%2F9D"
    "LCmdotwYE2ALctnDsf7Q49h%2BpGVHAPH0%3D"
)
V3_SEV = unquote(
    "itTbK%2bINTLuZji4vrvuJNQrk7SZRTF%2bq4xNG3pqoTjfP5NXfhIh5InU0CTjBdjYlhGIroV1sPVSvpLdwdHwtSA997SYH"
    "syQFZ1mMgqHzNXlNP4wSz2WFXqB5RWJk48YVD4F7StEdOVi5kBb60UeX6a5HNOkfl65iBfMywoXvsMw8mAD2cfOlGdCR4R"
    "fNEM6CuN%2f5w6eNNQdqPcQWb6g8lZ0x3nCQTvNBFodHqS3JxCix1JTWuXSD6kIB7cWhWYBo5GtBjH6aR%2bHwd5U52s73"
    "SZYyQIAhpwTrxeAmyxeULfWzfVoTohATIg4lnnZga1Dro7SIQcT4lOk%2f5%2bAgLD6tRQ%3d%3d"
)
V4_JSON = (
    '{"work_no":"1","org_code":"1","med_rec_no":"1","visit_id":"","accession_number":"",'
    '"id_card_no":"","patient_name":"","placer_order_no":""}'
)
V4_TOKEN = (
    "R8DHV1doOCMp7g0buzheujE/BsVrmvtb7VzAlOAO/AsIRz/h+QT/tErgHL35GzfuwD4+bOCrKJgMzsrPliBIVfHU7NkX"
    "EfkE+slnNkxYv4DvY6ktjgYJ1KVAk0vc+lXoaegfJudHHx4SUfLaqaSjeWX0e+SUYTHQMd8g0XerpgmL5r+XSqO84P+Fu"
    "Ec3qX78"
)
V4_SEV = unquote(
    "I7g83t8Seu9mZdZbQ8cHqrkwTmd6SxgK9kkGSwcZX46ygyTpxiZ9M1buW%2fkrHkmenz4lS1QrxdYhk%2b%2fMPIn1nbD4"
    "%2f6rgdprfmciI8On7HwRYHMdLaW%2flTcwO4Z8tjsMqGmsefJadSx7uxH1tQiZh5eu1N%2fNPwAviFFeeg5LA4oYa8Mll"
    "TyDqNE3LZavurgRKTqru4WvkynLTjMehiebTXIf7Ut4gyeqDh%2fq%2fS0FlBMWoXfEvsn9knXVx0zUEVcg3Nf7lCtDOF5J"
    "akRolbkrQd9BH0MFZsmlTvpNWCuww%2fNw1I2T%2fWxAFhpOV8tTsbJ6VQxFCIqo2QLl7VoUo00TKsQ%3d%3d"
)
V5_SEV = unquote(
    "g9G5bdqXADHdEj7YYrJzhqzUzKNnigfKyW1inHyjIeMec%2bo8s9sISj34uKmO32arNJTA4hBKkAFS2xfdCMhhQhcn3DdT"
    "1c6pGTayhYWBZfLLBfabnajgoc2Ngv0%2bRcDSm2QB5L%2fzeigz2%2bZafnW%2bebZkQ3eqeXOobpZw0rbO7McZ5mTTUh"
    "cxiKvlhHwvbI9Pen7ErgncmYJB%2b3Sib9zmXt66XjnwYcn4%2fR42YElD9yjQS9PO08R8kMRPfKM3kezjSoZjsLSg0lZpU"
    "%2bOS%2fZhdxXpPiFRfsBRBzJVYzWh5gGaIvPS5CS8tTSXXfIT0srt0EE6mLTAY6hhWb8ZJUadwrQ%3d%3d"
)

# V7: the H5 pages' per-value ciphertexts (4.4 report-list, 4.5 exam-detail, 4.6 lab-detail)
V7 = [
    ("1", "lpeFKtXZ1kc="),
    ("330922196309015018", "+A+DB27wKMdgGAvdJoGw9vC3EZ2xzF82"),
    ("SD-1601013025", "doH/Xf73VKJgK6QOJMvuWg=="),
    ("2470", "vvw30jQ1sjE="),
    ("RIS", "6hBuR3av+zI="),
    ("2019-11-01", "rpXMBIcxoZ7l4kYGnPgctQ=="),
    ("2019-11-02", "rpXMBIcxoZ4aHMYWvn/LpQ=="),
    ("2402", "mQ3OZ5VwkhQ="),
    ("acc123", "W4TzqL72se4="),
    ("221", "36ynFgk4lxE="),
]


def test_v1_appendix_token_encrypts_decrypts_and_url_encodes() -> None:
    assert des3.encrypt_text(V1_JSON, KEY) == V1_TOKEN
    assert des3.decrypt_text(V1_TOKEN, KEY) == V1_JSON
    assert quote(V1_TOKEN, safe="") == V1_URL_ENCODED


def test_v4_exam_report_token() -> None:
    assert des3.decrypt_text(V4_TOKEN, KEY) == V4_JSON
    assert des3.encrypt_text(V4_JSON, KEY) == V4_TOKEN


@pytest.mark.parametrize(("plain", "cipher"), V7)
def test_v7_h5_values(plain: str, cipher: str) -> None:
    assert des3.encrypt_text(plain, KEY) == cipher
    assert des3.decrypt_text(cipher, KEY) == plain


@pytest.mark.parametrize(
    ("token", "sev", "timestamp", "sign"),
    [
        ("TokenValue", "SevValue", "2020-05-01 12:09:22", "05459fbafa3d4d80f9f40b28b727b3ee"),
        (V1_TOKEN, V3_SEV, "2021-05-19 00:00:00", "ab908f036c291be486c88a6d17aba48d"),
        (V4_TOKEN, V4_SEV, "2021-05-25 16:00:00", "aee6746e4b91e1db72fb8e8eda3ef322"),
        ("", V5_SEV, "2021-06-17 09:00:00", "2a473b73d482724f741205588957dfa0"),
    ],
    ids=["V2-appendix", "V3-clinicview", "V4-exam-report", "V5-repeat-reminder"],
)
def test_seed_002_signs(token: str, sev: str, timestamp: str, sign: str) -> None:
    assert hexdigest("md5", token + sev + timestamp + MD5_KEY) == sign


def test_the_seed_sevs_are_2048_bit_rsa_blocks() -> None:
    from agent.crypto.encoding import b64decode

    assert {len(b64decode(sev, "sev")) for sev in (V3_SEV, V4_SEV, V5_SEV)} == {256}


def test_negative_controls_of_the_brief() -> None:
    assert des3.decrypt(des3.encrypt(b"x", KEY), KEY, mode="CBC") == b"x"
    # ECB, or the 16-byte key read as two-key 3DES (K3 = K1), give something else
    assert des3.encrypt_text(V1_JSON, KEY, mode="ECB") != V1_TOKEN
    two_key = (KEY + KEY[:8]).encode()
    assert des3.encrypt_text(V1_JSON, two_key) != V1_TOKEN


@pytest.mark.parametrize("key", ["short", "12345678", "abcdefghabcdefgh", "abcdefghabcdefghxyz"])
def test_a_key_that_degenerates_to_single_des_still_works(key: str) -> None:
    # K2 == K3 (zero padding) or K1 == K2: pycryptodome's DES3 refuses these keys
    for mode in ("CBC", "ECB"):
        text = des3.encrypt_text("RIS", key, mode=mode)
        assert des3.decrypt_text(text, key, mode=mode) == "RIS"


def test_single_des_equivalence_is_exact() -> None:
    from Crypto.Cipher import DES

    single = DES.new(b"short\0\0\0", DES.MODE_CBC, iv=b"TomTaw#7")
    assert des3.encrypt(b"abc", "short") == single.encrypt(b"abc" + b"\5" * 5)


def test_keys_longer_than_24_bytes_are_truncated() -> None:
    assert des3.key_bytes("x" * 30) == b"x" * 24


@given(st.text(), st.sampled_from(["CBC", "ECB"]))
def test_round_trip(text: str, mode: str) -> None:
    assert des3.decrypt_text(des3.encrypt_text(text, KEY, mode=mode), KEY, mode=mode) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "setting"),
    [
        (lambda: des3.encrypt_text("x", ""), "des_key"),
        (lambda: des3.encrypt_text("x", KEY, iv="short"), "des_iv"),
        (lambda: des3.decrypt_text("not base64!", KEY, source="token"), "token"),
        (lambda: des3.decrypt_text("AAAA", KEY, source="token"), "token"),
        (lambda: des3.decrypt_text(V1_TOKEN, "another key", source="token"), "token"),
    ],
    ids=["empty key", "short iv", "not base64", "not whole blocks", "wrong key"],
)
def test_bad_keys_and_ciphertexts_raise_crypto_error(call, setting: str) -> None:
    with pytest.raises(CryptoError) as info:
        call()
    assert info.value.setting == setting
    assert KEY not in str(info.value)


def test_a_wrong_iv_is_undetectable_in_cbc() -> None:
    # only the first block changes, so the padding still checks: documented, not an error
    assert des3.decrypt_text(V1_TOKEN, KEY, iv="12345678") != V1_JSON


def test_the_iv_is_recovered_from_one_known_pair() -> None:
    # the onboarding check for a production key: one (plaintext, ciphertext) from the platform
    from agent.crypto.encoding import b64decode

    assert des3.recover_iv(V1_JSON.encode(), b64decode(V1_TOKEN, "t"), KEY) == b"TomTaw#7"
    with pytest.raises(CryptoError):
        des3.recover_iv(b"short", b"", KEY)
