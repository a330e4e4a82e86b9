"""[uplinks.<name>] type = "insurance_imaging": every key, with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl, model_validator

from agent.config import ConfigPath, Section
from agent.listener_config import PlatformListener
from agent.uplinks.insurance_imaging.launch import ViewerLaunch
from agent.uplinks.kit.config import HttpConnectionSection
from agent.uplinks.kit.fieldfile import FieldFileError, load_field_file
from agent.uplinks.kit.fieldmap import RecordMap
from agent.uplinks.kit.wado import WadoLinks

Param = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
REPORT_MAP = "report.info"  # the map a report field file must have


class ReportService(Section):
    """[uplinks.<name>.report_service]: the report-information service the getway polls (4.1.2).

    The seed names no parameter, no time format and no response field: each is configurable,
    the defaults are ours (docs/platforms/insurance_imaging.md, "confirm at onboarding")."""

    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = "/pacs/reportInfo"
    start_param: Param = "startTime"
    end_param: Param = "endTime"
    type_param: Param = "type"
    exam_param: Param = "accessionNo"  # the exam's unique number: exam number or accession
    time_format: str = "%Y-%m-%d %H:%M:%S"  # of the window's bounds (local times)
    max_window_days: Annotated[float, Field(gt=0, le=366)] = 31.0  # a longer window: code 202
    max_records: Annotated[int, Field(ge=1, le=100_000)] = 5000  # more in one window: code 202
    field_map: ConfigPath | None = None  # a field file with [maps."report.info"]; default ours
    _map: RecordMap | None = None

    @model_validator(mode="after")
    def _readable_map(self) -> ReportService:
        if self.field_map is not None:
            try:
                maps = load_field_file(self.field_map).maps
            except FieldFileError as err:
                raise ValueError(f"field_map: {err}") from None
            if REPORT_MAP not in maps:
                raise ValueError(f'field_map: {self.field_map}: no [maps."{REPORT_MAP}"]')
            self._map = maps[REPORT_MAP]
        return self

    def record_map(self, default: RecordMap) -> RecordMap:
        """The response's field map: the configured file's, else `default`."""
        return self._map or default


class QrLinks(Section):
    """[uplinks.<name>.qr]: the report's QR link asked of the front-end when it is audited (4.3)."""

    enabled: bool = False
    kind: Literal["qrurl", "qrcode"] = "qrurl"  # the film's URL, or a QR image in Base64
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")] = "/getway/reportAndFilm/api"
    hint: str = "扫描查看数字影像"  # printed under the code (4.3.1)


class DeletionNotices(Section):
    """[uplinks.<name>.deletion]: the notice of images PACS deleted (4.5; its URL is blank)."""

    enabled: bool = False
    url: HttpUrl | None = None  # required when enabled: the seed leaves 4.5.2 empty
    method: Literal["post_json", "post_form", "get"] = "post_json"
    time_format: str = "%Y-%m-%d %H:%M:%S"  # of operateDateTime (the seed: DateTime)

    @model_validator(mode="after")
    def _url_when_enabled(self) -> DeletionNotices:
        if self.enabled and self.url is None:
            raise ValueError("url is required when enabled: the seed leaves it blank (4.5.2)")
        return self


class InsuranceImagingConfig(HttpConnectionSection):
    """[uplinks.<name>] type = "insurance_imaging": seed 004, the medical-insurance imaging cloud"""

    hospital_id: Annotated[str, Field(min_length=1, max_length=64)]  # 医保医疗机构代码
    frontend_url: HttpUrl | None = None  # the cloud's front-end machine: http://IP:端口
    max_body: Annotated[int, Field(ge=256)] = 1024 * 1024  # a qrcode answer holds an image
    listener: PlatformListener = PlatformListener()  # where the cloud's front-end calls us
    report_service: ReportService = ReportService()
    wado: WadoLinks = WadoLinks()  # 4.2 方式二: image links in the answers, served on the listener
    qr: QrLinks = QrLinks()
    viewer: ViewerLaunch = ViewerLaunch()  # 4.4: the outside-hospital viewer plugin's launch
    deletion: DeletionNotices = DeletionNotices()  # 4.5

    @model_validator(mode="after")
    def _frontend_when_called(self) -> InsuranceImagingConfig:
        if self.qr.enabled and self.frontend_url is None:
            raise ValueError("frontend_url is required when qr is enabled: the front-end's URL")
        return self

    def frontend(self, path: str) -> str:
        """`path` on the front-end machine."""
        assert self.frontend_url is not None
        return f"{str(self.frontend_url).rstrip('/')}/{path.lstrip('/')}"
