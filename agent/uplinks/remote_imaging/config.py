"""[uplinks.<name>] type = "remote_imaging": every key, with the defaults the docs state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from Crypto.PublicKey import RSA
from pydantic import Field, model_validator

from agent.config import ConfigPath, Seconds, Secret, TimeZoneName
from agent.uplinks.kit.config import TokenPlatformSection
from agent.uplinks.kit.fields import LengthUnit
from agent.uplinks.remote_imaging.dictionaries import (
    DEFAULT_EXAM_CLASS_MAP,
    DEFAULT_MODALITY_MAP,
    EXAM_CLASSES,
    MODALITIES,
)
from agent.uplinks.remote_imaging.jiwei import JiweiSection
from agent.uplinks.remote_imaging.sign import (
    DEFAULT_FIELDS,
    BadKeyError,
    Padding,
    SignField,
    load_key,
    max_plaintext,
    plaintext,
)
from agent.uplinks.remote_imaging.viewer import ReportViewerSection

AeTitle = Annotated[str, Field(pattern=r"^[ -\[\]-~]{1,16}$")]  # printable ASCII but "\"
Code32 = Annotated[str, Field(min_length=1, max_length=32)]


class RemoteImagingConfig(TokenPlatformSection):
    """[uplinks.<name>] type = "remote_imaging" """

    # base_url: http://host:port/<工程名>, e.g. http://10.1.2.3:8080/openapi (and TLS, timeout
    # and answer cap keys: from the kit)
    app_id: Annotated[str, Field(min_length=1, max_length=128)]
    org_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # → hospital_code
    license: Secret
    public_key: str | None = None  # PEM, or Base64 DER as the platform hands it out
    public_key_file: ConfigPath | None = None
    sign_fields: Annotated[list[SignField], Field(min_length=1)] = list(DEFAULT_FIELDS)
    sign_separator: str = ","
    sign_padding: Padding = "pkcs1v15"
    timezone: TimeZoneName = "Asia/Shanghai"  # of the `time` sign field
    token_path: str = "v1/auth/getToken"  # noqa: S105 - a path
    token_header: Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")] = "token"  # noqa: S105
    token_prefix: str = ""  # e.g. "Bearer " if the platform wants one
    token_error_keywords: list[str] = ["token", "令牌", "鉴权", "权鉴"]
    busy_keywords: list[str] = ["繁忙", "稍后", "超时", "busy", "timeout"]
    hospital_code: Code32
    hospital_name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    # Several hospitals behind this front-end (医共体): the hospitalCode values an exam may name
    # (empty: an exam's hospitalCode is sent as posted); exams without one are hospital_code's.
    hospital_codes: list[Code32] = []
    length_unit: LengthUnit = "chars"
    # Where the platform gets the images (§3.2.1.2, §3.2.3.2.2): "store" C-STORE after the push;
    # "qr" the push only (the platform retrieves from our Q/R SCP); "url" the push with imageUrl
    # (image_url_template), no C-STORE; "none" the push without imageList.
    image_mode: Literal["store", "qr", "url", "none"] = "store"
    # §3.2.3.2.1 "不能经过特殊格式压缩": send compressed instances decoded to Explicit VR Little
    # Endian (JPEG, JPEG-LS, JPEG 2000, RLE through pylibjpeg); a syntax no codec decodes is a
    # dead letter. Off: instances go as received.
    decompress: bool = False
    # §3.2.3.1 reportImage: "dicom" each report image (JPEG, PNG, BMP) C-STOREd into the study as
    # Secondary Capture and listed with its sopInstanceUID (store mode); "path" JPEG and BMP
    # listed as JPG/BMP with rptImgPath = report_image_path_prefix + the file's name, for a share
    # or FTP the platform reads (the seed's 图像相对路径); PNG, a type the seed does not list,
    # still goes as DICOM.
    report_images: Literal["dicom", "path"] = "dicom"
    report_image_path_prefix: Annotated[str, Field(max_length=64)] = ""
    jiwei: JiweiSection = JiweiSection()  # §3.1: the 基卫 apply-form lookup (local API)
    report_viewer: ReportViewerSection = ReportViewerSection()  # §3.4.3 URL for HIS (local API)
    image_list: Literal["per_study", "per_modality"] = "per_study"
    image_type: Annotated[str, Field(max_length=32)] = "DICOM"
    image_url_template: str | None = None  # imageUrl: "{study_uid}", "{accession}" replaced
    statistics_classes: list[Code32] = []  # always reported, "0" when a class had no exam
    # §3.2.4 dictionaries, applied before sending (a value without a code refuses the message):
    # DICOM modality → imageList.modality; the exam's class → examClass (WNCV5103_01). Entries
    # here are added to (or replace) the defaults in dictionaries.py.
    modality_map: dict[str, str] = {}
    exam_class_map: dict[str, str] = {}
    check_exam_class: bool = True  # False: examClass sent as posted (the seed's VC(32) only)
    organ_names: Literal["as_posted", "codes"] = "as_posted"  # "codes": §3.2.4.2 code per organ
    check_specimen_category: bool = False  # specimenCategory must be a §3.2.4.3 code
    statistics_count_as_string: bool = True  # accordCount "55" as in the seed's example
    dicom_host: str | None = None  # default: the host of base_url
    dicom_port: Annotated[int, Field(ge=1, le=65535)] = 104
    called_ae_title: AeTitle
    calling_ae_title: AeTitle = "EDGE_AGENT"
    connect_timeout: Seconds = 10.0
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 30.0
    network_timeout: Seconds = 60.0  # the silence the platform tolerates (association_idle < it)
    max_pdu: Annotated[int, Field(ge=0)] = 16382  # what we receive; 0 = unlimited
    association_idle: Seconds = 30.0  # release an association unused this long (< network_timeout)
    # A study's images go out one after another on its own association, settled per run.
    send_run: Annotated[int, Field(ge=1, le=1000)] = 32

    @model_validator(mode="after")
    def _key_and_sign(self) -> RemoteImagingConfig:
        if (self.public_key is None) == (self.public_key_file is None):
            raise ValueError("give exactly one of public_key and public_key_file")
        key = self.rsa_key()
        text = plaintext(self.sign_fields, self.sign_values(), datetime(2000, 1, 1))
        limit = max_plaintext(key, self.sign_padding)
        if len(text.encode("utf-8")) > limit:
            raise ValueError(
                f"sign_fields make {len(text.encode('utf-8'))} bytes; this "
                f"{key.size_in_bits()}-bit key with {self.sign_padding} takes at most {limit}"
            )
        if self.image_url_template is not None:
            try:
                self.image_url_template.format(study_uid="", accession="")
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"image_url_template: {err!r}") from err
        bad = sorted(v for v in self.modality_map.values() if v not in MODALITIES)
        bad += sorted(v for v in self.exam_class_map.values() if v not in EXAM_CLASSES)
        if bad:
            raise ValueError(f"not a seed code: {', '.join(bad)} (modality_map, exam_class_map)")
        if self.image_mode == "url" and self.image_url_template is None:
            raise ValueError('image_mode = "url" needs image_url_template')
        if self.association_idle >= self.network_timeout:
            raise ValueError("association_idle must be below network_timeout")
        return self

    def modalities(self) -> dict[str, str]:
        """DICOM modality → the seed's code (the defaults and this config's entries)."""
        return {**DEFAULT_MODALITY_MAP, **self.modality_map}

    def exam_classes(self) -> dict[str, str]:
        """The exam's class as posted → WNCV5103_01 (the defaults and this config's entries)."""
        return {**DEFAULT_EXAM_CLASS_MAP, **self.exam_class_map}

    def rsa_key(self) -> RSA.RsaKey:
        """The platform's public key (checked at start)."""
        if self.public_key_file is not None:
            try:
                text = self.public_key_file.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as err:
                raise ValueError(f"public_key_file {self.public_key_file}: {err}") from err
        else:
            text = self.public_key or ""
        try:
            key = load_key(text)
        except BadKeyError as err:
            raise ValueError(f"public key: {err}") from err
        if key.has_private():
            raise ValueError("public key: this is a private key; give the platform's public key")
        return key

    def sign_values(self) -> dict[str, str]:
        """The values of the sign fields other than `time`."""
        return {
            "appId": self.app_id,
            "orgId": self.org_id or self.hospital_code,
            "license": self.license.get_secret_value(),
        }
