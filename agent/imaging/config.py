"""[domains.<name>] type = "imaging": the study index, stability and what is forwarded where."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from agent.config import PluginSection, Seconds, TimeZoneName

_HH_MM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")


def _clock_time(value: str) -> str:
    if not _HH_MM.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day HH:MM (00:00-23:59)")
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]


class ImagingConfig(PluginSection):
    """The imaging domain: index what the spool receives, forward stable studies with exams."""

    quiet_seconds: Seconds = 60.0  # a study without a new instance this long is stable
    duplicates: Literal["keep_first", "overwrite"] = "keep_first"  # a SOP Instance UID again
    forward_to: list[str] = ["remote_imaging"]  # uplinks that get exam pushes, images, statistics
    statistics_times: list[ClockTime] = ["12:00", "20:00"]  # local times of the daily uploads
    statistics_days: Annotated[int, Field(ge=1, le=31)] = 1  # 2: today and yesterday
    timezone: TimeZoneName = "Asia/Shanghai"  # exam times and statistics dates are local
    scan_interval: Seconds = 5.0  # how often the scheduler looks for studies that went quiet

    def uplinks_used(self) -> list[str]:
        """The uplinks studies are forwarded to."""
        return list(self.forward_to)

    @field_validator("forward_to", "statistics_times")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"must be unique, repeated: {', '.join(repeated)}")
        return value
