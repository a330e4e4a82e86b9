"""Seed 003 §3.4.3: the URL HIS opens to show a patient's PACS reports on the provincial platform
(`…/clinic/html/query.htm?sick_id=7173_brid00`), built from configuration (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlencode

from pydantic import Field, HttpUrl, model_validator

from agent.config import Section

PARAMS = ("pat_local_id", "exam_no", "sick_id", "inpatient_no", "outpatient_no")  # lower case


class ReportViewerSection(Section):
    """[uplinks.<name>.report_viewer]: the report-viewing URL (seed 003 §3.4.3)."""

    enabled: bool = False
    url: HttpUrl | None = None  # e.g. http://10.120.6.28:5063/clinic/html/query.htm ("可以维护")
    hospital_id: Annotated[str, Field(max_length=32)] = ""  # 医院ID, the prefix "<id>_"
    # Parameters carrying the "<医院ID>_" prefix: the seed names SICK_ID and YJDJH0 (医技登记号,
    # taken to be exam_no). Confirm at onboarding.
    prefixed: list[str] = ["sick_id", "exam_no"]

    @model_validator(mode="after")
    def _complete(self) -> ReportViewerSection:
        if self.enabled and (self.url is None or not self.hospital_id):
            raise ValueError("url and hospital_id are required when enabled")
        unknown = sorted(set(self.prefixed) - set(PARAMS))
        if unknown:
            raise ValueError(f"prefixed: not a parameter of query.htm: {', '.join(unknown)}")
        return self


def viewer_url(
    section: ReportViewerSection, given: Mapping[str, str], hospital_id: str = ""
) -> str:
    """query.htm with the given parameters (at least one), prefixed where the seed says;
    `hospital_id` overrides the configured one (several hospitals). ValueError naming why."""
    unknown = sorted(set(given) - set(PARAMS))
    if unknown:
        raise ValueError(f"not a parameter of query.htm: {', '.join(unknown)}")
    values = {k: v for k, v in given.items() if v}
    if not values:
        raise ValueError(f"give at least one of {', '.join(PARAMS)}")
    prefix = hospital_id or section.hospital_id
    query = {
        k: f"{prefix}_{v}" if k in section.prefixed and prefix and not v.startswith(f"{prefix}_")
        else v
        for k, v in values.items()
    }  # fmt: skip
    return f"{section.url}?{urlencode(query)}"
