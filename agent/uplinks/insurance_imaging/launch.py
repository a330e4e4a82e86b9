"""Seed 004 §4.4.3.1: the outside-hospital viewer plugin's launch at PACS login/logout, in its
three forms (CS command line, WYHT:// URL, hrball HTTP GET), the doctor's ID number SM2-encrypted
inside the agent. Pure: nothing here logs, and the ID number and its ciphertext never leave it
but in the forms."""

from __future__ import annotations

from typing import Literal

from pydantic import HttpUrl, model_validator

from agent.config import Section
from agent.crypto import sm2
from agent.crypto.encoding import encode_uri
from agent.errors import CryptoError
from agent.vocabulary.doctors import DoctorLogin

# encodeURI keeps these; inside a query value they would end it, start another or read as an
# escape, so they are escaped too (then every % becomes $, as the seed says).
QUERY_BREAKERS = "&=#+$"
ACTION = {"login": "1", "logout": "2"}
SEX = {"unknown": "0", "male": "1", "female": "2", "other": "9"}  # §5.2
DOCTOR_TYPE = {"physician": "1", "technician": "2", "nurse": "3"}  # §5.7


class ViewerLaunch(Section):
    """[uplinks.<name>.viewer]: how the launch is built (the SM2 key comes at onboarding)."""

    enabled: bool = False
    sm2_public_key: str | None = None  # hex X‖Y (with or without 04), Base64 SPKI or PEM
    sm2_layout: sm2.Layout = "C1C3C2"
    sm2_prefix: bool = True  # C1 written with its 04 point prefix
    sm2_output: Literal["hex", "HEX", "base64"] = "hex"
    plugin_exe: str = r"C:\Program Files\YBYXY\Plugin.exe"  # 方案一: the plugin's path
    scheme: str = "WYHT://"  # 方案二: the protocol the plugin registers
    hrball_url: HttpUrl | None = None  # 方案三: http://IP:PORT/hrball/
    _key: bytes = b""

    @model_validator(mode="after")
    def _key_when_enabled(self) -> ViewerLaunch:
        if self.enabled and not self.sm2_public_key:
            raise ValueError("sm2_public_key is required when enabled (the cloud provides it)")
        if self.sm2_public_key:
            try:
                self._key = sm2.load_public_key(self.sm2_public_key, "sm2_public_key")
            except CryptoError as err:
                raise ValueError(str(err)) from None
        return self

    def encrypt(self, id_card_no: str) -> str:
        """The ID number SM2-encrypted as configured."""
        return sm2.encrypt_text(
            self._key,
            id_card_no,
            layout=self.sm2_layout,
            prefix=self.sm2_prefix,
            output=self.sm2_output,
        )


def query_value(value: str) -> str:
    """A value as the seed writes it: encodeURI, the query's own delimiters escaped, % → $."""
    escaped = "".join(f"%{ord(c):02X}" if c in QUERY_BREAKERS else c for c in encode_uri(value))
    return escaped.replace("%", "$")


def launch_query(settings: ViewerLaunch, hospital_id: str, doctor: DoctorLogin) -> str:
    """The query string all three forms share, in the seed's order, the ID number encrypted."""
    values = {
        "hisUserId": doctor.user_id,
        "type": ACTION[doctor.action],
        "doctorName": doctor.name,
        "department": doctor.department,
        "departmentCode": doctor.department_code,
        "doctorSex": SEX[doctor.sex],
        "doctorIdCardNo": settings.encrypt(doctor.id_card_no),
        "doctorCode": doctor.insurance_code,
        "doctorType": DOCTOR_TYPE[doctor.role],
        "hospitalId": hospital_id,
        "phoneNumber": doctor.phone,
    }
    return "&".join(f"{k}={query_value(v)}" for k, v in values.items() if v is not None)


def launch_forms(settings: ViewerLaunch, hospital_id: str, doctor: DoctorLogin) -> dict[str, str]:
    """The three launch forms of one login or logout (hrball only when its URL is configured)."""
    query = launch_query(settings, hospital_id, doctor)
    forms = {
        "command_line": f'"{settings.plugin_exe}" "{query}"',
        "url": f"{settings.scheme}{query}",
    }
    if settings.hrball_url is not None:
        forms["http"] = f"{str(settings.hrball_url).rstrip('?')}?{query}"
    return forms
