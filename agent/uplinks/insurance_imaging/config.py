"""[uplinks.<name>] type = "insurance_imaging": every key, with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from agent.config import ConfigPath, Section, UplinkSection
from agent.listener_config import PlatformListener
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


class InsuranceImagingConfig(UplinkSection):
    """[uplinks.<name>] type = "insurance_imaging": seed 004, the medical-insurance imaging cloud"""

    hospital_id: Annotated[str, Field(min_length=1, max_length=64)]  # 医保医疗机构代码
    listener: PlatformListener = PlatformListener()  # where the cloud's front-end calls us
    report_service: ReportService = ReportService()
    wado: WadoLinks = WadoLinks()  # 4.2 方式二: image links in the answers, served on the listener
