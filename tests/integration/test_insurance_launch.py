"""Seed 004 §4.4.3.1: the viewer plugin's launch, built inside the agent: the seed's `$` example,
values that would break the query, the ID number SM2-encrypted (decrypted by the key's holder
and by OpenSSL), over the local API and the CLI, and never in a log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config import ApiSection
from agent.crypto import sm2, sm2keys
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.launch import query_value
from agent.uplinks.insurance_imaging.uplink import launcher
from agent.web.api import make_app
from tests.unit.test_crypto_openssl import openssl, sm2_pair  # noqa: F401 - fixtures

TOKEN = "launch-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID_NUMBER = "330922196309015018"
PRIVATE = sm2keys.generate_private_key()
DOCTOR = {
    "user_id": "1001",
    "action": "login",
    "name": "张医生",
    "department": "放射科",
    "department_code": "0301",
    "sex": "male",
    "role": "physician",
    "insurance_code": "D330100000001",
    "id_card_no": ID_NUMBER,
}


def insurance(public: bytes = sm2.public_key_of(PRIVATE), **viewer: Any) -> InsuranceImagingConfig:
    return InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H33010200001",
            "viewer": {
                "enabled": True,
                "sm2_public_key": public.hex(),
                "hrball_url": "http://10.0.0.9:8080/hrball/",
                **viewer,
            },
        }
    )


def params(query: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in query.split("&"))


def test_the_seeds_example_and_values_that_would_break_the_query():
    assert query_value("张医生") == "$E5$BC$A0$E5$8C$BB$E7$94$9F"
    assert query_value("A&B=C#D+E$F%G") == "A$26B$3DC$23D$2BE$24F$25G"
    assert query_value("1001") == "1001" and query_value("a b") == "a$20b"


def test_every_form_carries_the_same_query_with_the_id_number_encrypted():
    forms = launcher(insurance())(DOCTOR)
    query = urlsplit(forms["http"]).query
    assert forms["http"] == f"http://10.0.0.9:8080/hrball/?{query}"
    assert forms["url"] == f"WYHT://{query}"
    assert forms["command_line"] == f'"C:\\Program Files\\YBYXY\\Plugin.exe" "{query}"'
    found = params(query)
    assert list(found) == [
        "hisUserId", "type", "doctorName", "department", "departmentCode", "doctorSex",
        "doctorIdCardNo", "doctorCode", "doctorType", "hospitalId",
    ]  # fmt: skip
    assert found["doctorName"] == "$E5$BC$A0$E5$8C$BB$E7$94$9F"
    assert found["hospitalId"] == "H33010200001" and found["type"] == "1"
    assert (found["doctorSex"], found["doctorType"], found["doctorCode"]) == (
        "1",
        "1",
        "D330100000001",
    )
    cipher = found["doctorIdCardNo"]
    assert ID_NUMBER not in forms["url"] and len(cipher) == 2 * (65 + 32 + 18)  # 04‖C1, C3, C2
    assert sm2.decrypt_text(PRIVATE, cipher) == ID_NUMBER
    assert launcher(insurance())(DOCTOR)["url"] != forms["url"]  # SM2 is randomised
    logout = params(launcher(insurance())({**DOCTOR, "action": "logout", "sex": "unknown"})["url"])
    assert (logout["type"], logout["doctorSex"]) == ("2", "0")


@pytest.mark.parametrize(
    ("viewer", "decrypt"),
    [
        ({"sm2_layout": "C1C2C3"}, {"layout": "C1C2C3"}),
        ({"sm2_prefix": False}, {"prefix": False}),
        ({"sm2_output": "base64"}, {"output": "base64"}),
    ],
)
def test_the_layout_prefix_and_encoding_are_the_clouds_to_choose(viewer, decrypt):
    found = params(urlsplit(launcher(insurance(**viewer))(DOCTOR)["http"]).query)
    cipher = found["doctorIdCardNo"].replace("$", "%")
    if viewer.get("sm2_output") == "base64":
        from urllib.parse import unquote

        cipher = unquote(cipher)  # `+`, `/`, `=` were escaped, as every breaker is
    assert sm2.decrypt_text(PRIVATE, cipher, **decrypt) == ID_NUMBER


def test_openssl_decrypts_the_id_number_layout_check(openssl, sm2_pair, tmp_path):  # noqa: F811
    _, public = sm2_pair
    url = launcher(insurance(public))(DOCTOR)["url"]
    cipher = bytes.fromhex(params(url.removeprefix("WYHT://"))["doctorIdCardNo"])
    c1, c3, c2 = cipher[1:65], cipher[65:97], cipher[97:]  # 04, then C1C3C2
    (tmp_path / "id.der").write_bytes(sm2keys.der_ciphertext(c1, c3, c2))
    clear = openssl("pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "id.der")
    assert clear == ID_NUMBER.encode()


async def test_pacs_gets_the_forms_from_the_local_api_and_nothing_reaches_the_log():
    async def emit(event: Any) -> bool:
        raise AssertionError("nothing is journaled")

    async def query(fn: Any) -> Any:
        raise AssertionError("nothing is read")

    settings = ApiSection(enabled=True, token=SecretStr(TOKEN))
    app = make_app(settings, emit, query, viewer_launch=launcher(insurance()))
    with capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            answer = await client.post("/api/v1/insurance/plugin-launch", json=DOCTOR, headers=AUTH)
            assert answer.status == 200
            forms = await answer.json()
            bad = await client.post(
                "/api/v1/insurance/plugin-launch",
                json={**DOCTOR, "sex": "男", "action": "3"},
                headers=AUTH,
            )
            problems = (await bad.json())["problems"]
    assert set(forms) == {"command_line", "url", "http"}
    assert bad.status == 422
    assert [p.split(":")[0] for p in problems] == ["action", "sex"]
    cipher = params(urlsplit(forms["http"]).query)["doctorIdCardNo"]
    assert ID_NUMBER not in str(logs) and cipher not in str(logs)


def test_the_cli_builds_the_same_forms(tmp_path: Path):
    config = tmp_path / "agent.toml"
    key = sm2.public_key_of(PRIVATE).hex()
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n'
        '[uplinks.insurance]\ntype = "insurance_imaging"\nhospital_id = "H1"\n'
        f'[uplinks.insurance.viewer]\nenabled = true\nsm2_public_key = "{key}"\n',
        encoding="utf-8",
    )
    command = ["insurance", "launch", "-c", str(config), "--form", "url"]
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", *command],
        input=json.dumps(DOCTOR),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith("WYHT://hisUserId=1001&type=1&doctorName=$E5$BC$A0")
    assert sm2.decrypt_text(PRIVATE, params(url[7:])["doctorIdCardNo"]) == ID_NUMBER
    assert ID_NUMBER not in done.stderr
