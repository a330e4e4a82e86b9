"""[domains.<name>] type = "imaging": the study index, stability and what is forwarded where."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.config import PluginSection, Seconds, TimeZoneName
from agent.imaging.plans import Offer, everything, resolve

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
    forward_to: list[str] = ["remote_imaging"]  # uplinks; each gets what its type's plan asks for
    # Exams are pushed from this examStatus on (50 images, 60 preliminary, 65 returned, 70 final);
    # a study's images wait for its first push. "70": only diagnosed exams (seed 003 §3.2.1.2).
    push_from_status: Literal["50", "60", "65", "70"] = "50"
    statistics_times: list[ClockTime] = ["12:00", "20:00"]  # local times of the daily uploads
    statistics_days: Annotated[int, Field(ge=1, le=31)] = 1  # 2: today and yesterday
    timezone: TimeZoneName = "Asia/Shanghai"  # exam times and statistics dates are local
    scan_interval: Seconds = 5.0  # how often the scheduler looks for studies that went quiet
    # Spool retention: an image's file is deleted (its index row kept, marked purged) keep_days
    # after every forward_to uplink that takes images has it delivered, never while a message
    # for it is pending, in flight or dead, and not before pull_keep_days after its study (or
    # its exam/report) last changed, for the platforms that pull images (C-MOVE, WADO).
    retention: bool = True
    keep_days: Annotated[float, Field(ge=0)] = 30.0
    pull_keep_days: Annotated[float, Field(ge=0)] = 0.0
    purge_batch: Annotated[int, Field(ge=1, le=10_000)] = 200  # images looked at per step
    purge_interval: Seconds = 60.0  # between passes over the spool (and disk checks)
    # Journal retention (run by [journal]'s keeper): an image's index row (with its series, study
    # and patient once empty) goes index_keep_days after its file was purged; exams with their
    # report files (the agent's copies in exam-files/ too), apply forms and statistics days go
    # record_days after they last changed (never before pull_keep_days, nor while a message
    # that carries them is pending, in flight or dead).
    index_keep_days: Annotated[int, Field(ge=1)] = 365
    record_days: Annotated[int, Field(ge=1)] = 1096
    # Disk pressure on the spool's filesystem (free MiB), above the DICOM sources' min_free_mb
    # reserve: warning raises an alert; critical also purges what is delivered at once,
    # ignoring keep_days. 0 turns a level off.
    disk_warning_free_mb: Annotated[int, Field(ge=0)] = 4096
    disk_critical_free_mb: Annotated[int, Field(ge=0)] = 2048

    # forward_to resolved against the uplinks' plans when loaded with the plugin registry.
    _plans: dict[str, frozenset[Offer]] | None = PrivateAttr(default=None)

    def uplinks_used(self) -> list[str]:
        """The uplinks studies are forwarded to."""
        return list(self.forward_to)

    def plans(self) -> dict[str, frozenset[Offer]]:
        """What each forward_to uplink receives (all that is produced if loaded without plans)."""
        return dict(self._plans) if self._plans is not None else everything(self.forward_to)

    @model_validator(mode="after")
    def _resolve_plans(self, info: ValidationInfo) -> Self:
        # load_config puts each uplink's plan in the context; the domain never imports uplinks.
        uplink_plans = (info.context or {}).get("uplink_plans")
        if uplink_plans is not None:
            self._plans = resolve(self.forward_to, uplink_plans)
        return self

    @model_validator(mode="after")
    def _levels_in_order(self) -> Self:
        both = self.disk_critical_free_mb and self.disk_warning_free_mb
        if both and self.disk_critical_free_mb >= self.disk_warning_free_mb:
            raise ValueError("disk_critical_free_mb must be below disk_warning_free_mb")
        return self

    @field_validator("forward_to", "statistics_times")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"must be unique, repeated: {', '.join(repeated)}")
        return value
