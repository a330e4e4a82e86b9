"""[uplinks.<name>] type = "results_sharing": every key, with the defaults the docs state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, HttpUrl, PrivateAttr, ValidationInfo, model_validator

from agent.config import ConfigPath, Seconds, Secret, TimeZoneName
from agent.uplinks.kit.config import HttpConnectionSection
from agent.uplinks.results_sharing.gate_config import ImageGate
from agent.uplinks.results_sharing.mapping import (
    DEFAULT_DIR,
    MappingError,
    MappingSet,
    load_mapping_set,
)

Template = Annotated[str, Field(max_length=512, pattern=r"^https?://")]


class ResultsSharingConfig(HttpConnectionSection):
    """[uplinks.<name>] type = "results_sharing": seed 001, Xuancheng's results sharing"""

    base_url: HttpUrl  # the sub-platform
    # 说明(1): when the sub-platform fails, service moves to another platform: tried in order.
    fallback_urls: list[HttpUrl] = []
    fallback_hold: Seconds = 300.0  # how long a working fallback is kept before the primary
    app_id: Annotated[str, Field(min_length=1, max_length=128)]
    app_secret: Secret  # env:NAME, credential:NAME, file:PATH or the value
    org_code: Annotated[str, Field(min_length=1, max_length=64)]  # our institution's code
    org_name: str = ""
    token_lifetime: Seconds = 7200.0  # the seed: 7200 s; used when the answer states none
    token_refresh_margin: Annotated[float, Field(ge=0)] = 300.0
    # A folder with platform.toml and fields.toml replacing ours (which are assumed).
    mappings: ConfigPath | None = None
    # Our image services, registered with each exam index ({study_uid} is filled in).
    viewer_url_template: Template | None = None
    uid_query_url_template: Template | None = None
    wado_url_template: Template | None = None
    # Where the local API stores report PDFs (default: <agent.state_dir>/exam-files).
    exam_files_dir: ConfigPath | None = None
    # 公共3/5: each day's counts reported at this local time for the previous day, then the
    # platform's completeness check asked; what it lacks is sent again, up to max_resends.
    daily_report: bool = True
    daily_report_time: Annotated[str, Field(pattern=r"^(?:[01]\d|2[0-3]):[0-5]\d$")] = "01:00"
    daily_catch_up_days: Annotated[int, Field(ge=1, le=31)] = 3  # days looked back at start
    daily_max_resends: Annotated[int, Field(ge=0, le=10)] = 2
    daily_recheck_after: Seconds = 600.0  # after re-sending, before asking again
    timezone: TimeZoneName = "Asia/Shanghai"  # the days are local days
    # Seconds added to the clock the daily reconciliation reads: 0 in production; a drill or
    # an end-to-end test sets 86400 to reconcile today (as "yesterday") after a restart.
    daily_clock_offset: Annotated[float, Field(ge=-31 * 86400.0, le=31 * 86400.0)] = 0.0
    gate: ImageGate = ImageGate()  # 检查8-12: viewer gate, UID query, WADO-URI
    _mapping: MappingSet | None = PrivateAttr(default=None)
    _files_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _read_mappings(self, info: ValidationInfo) -> Self:
        try:
            self._mapping = load_mapping_set(self.mappings or DEFAULT_DIR)
        except MappingError as err:
            raise ValueError(f"mappings: {err}") from None
        state_dir = (info.context or {}).get("state_dir")
        if self.exam_files_dir is not None:
            self._files_dir = self.exam_files_dir
        elif state_dir is not None:
            self._files_dir = Path(state_dir) / "exam-files"
        return self

    @property
    def mapping(self) -> MappingSet:
        """The mapping set in use (ours unless `mappings` names another)."""
        assert self._mapping is not None
        return self._mapping

    @property
    def files_dir(self) -> Path:
        """Where report PDFs are read from."""
        return self._files_dir or Path("/var/lib/edge-agent/exam-files")

    def base_urls(self) -> list[str]:
        """The sub-platform, then the fallbacks, each without a trailing slash."""
        return [str(u).rstrip("/") for u in (self.base_url, *self.fallback_urls)]

    def token_timing(self) -> tuple[float, float]:
        """(token_lifetime, token_refresh_margin)."""
        return self.token_lifetime, self.token_refresh_margin

    def links(self) -> dict[str, str]:
        """Our image services' URL templates, by the names the maps read (links.*)."""
        return {
            "viewer": self.viewer_url_template or "",
            "uid_query": self.uid_query_url_template or "",
            "wado": self.wado_url_template or "",
        }
