"""Sans-I/O: the JSON sidecar beside a captured image, validated into DICOM-ready values."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.dicom.errors import CaptureError

_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_TIME = re.compile(r"^(\d{2}):?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?$")
UID_PATTERN = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
_CS = re.compile(r"^[A-Z0-9_ ]*$")
_PLAIN = r"^[^\\\x00-\x1f]*$"  # one value: no backslash (value separator), no control characters
Short = Annotated[str, Field(max_length=16, pattern=_PLAIN)]  # SH
Long = Annotated[str, Field(max_length=64, pattern=_PLAIN)]  # LO
Name = Annotated[str, Field(max_length=192, pattern=_PLAIN)]  # PN: three component groups


class Sidecar(BaseModel):
    """The JSON file beside a captured image (same basename, `.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=_PLAIN)]
    patient_name: Name = ""  # DICOM PN, e.g. "Wang^Wei=王^伟" or just "王伟"
    accession: Short = ""
    study_date: str
    study_time: str = ""
    modality: Annotated[str, Field(min_length=1, max_length=16)]
    study_uid: Annotated[str, Field(max_length=64)] = ""
    study_description: Long = ""
    series_description: Long = ""
    series_number: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    request_form: bool = False  # a scanned paper request form: series number 0 (seed 003)
    session: Long = ""  # images of one capture session share a series
    sex: Literal["M", "F", "O", ""] = ""
    birth_date: str = ""
    image_number: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    body_part: Short = ""
    referring_physician: Long = ""

    @field_validator("study_date", "birth_date")
    @classmethod
    def _date(cls, value: str) -> str:
        if not value:
            return value
        if (match := _DATE.match(value)) is None:
            raise ValueError("expected YYYYMMDD or YYYY-MM-DD")
        datetime.strptime("".join(match.groups()), "%Y%m%d")  # a calendar check
        return "".join(match.groups())

    @field_validator("study_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not value:
            return value
        if (match := _TIME.match(value)) is None:
            raise ValueError("expected HHMMSS or HH:MM:SS")
        return "".join(part or "" for part in match.groups())

    @field_validator("modality", "body_part")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CS.match(value.upper()):
            raise ValueError("a DICOM code string: letters, digits, underscore, space")
        return value.upper()

    @field_validator("study_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        if value and not UID_PATTERN.match(value):
            raise ValueError("not a DICOM UID")
        return value

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, value: object) -> object:
        return {"男": "M", "女": "F"}.get(value, value) if isinstance(value, str) else value


def parse_sidecar(raw: bytes, *, encoding: str = "utf-8", ignore_unknown: bool = False) -> Sidecar:
    """The validated sidecar; CaptureError("bad_sidecar") naming the first problem."""
    try:
        document = json.loads(raw.decode("utf-8-sig" if encoding == "utf-8" else encoding))
    except (UnicodeDecodeError, ValueError) as err:
        raise CaptureError("bad_sidecar", f"not JSON: {err}") from err
    except RecursionError as err:
        raise CaptureError("bad_sidecar", "not JSON: nested too deeply") from err
    if not isinstance(document, dict):
        raise CaptureError("bad_sidecar", "not a JSON object")
    if ignore_unknown:
        document = {k: v for k, v in document.items() if k in Sidecar.model_fields}
    try:
        return Sidecar.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CaptureError("bad_sidecar", f"{where}: {first['msg']}") from err
