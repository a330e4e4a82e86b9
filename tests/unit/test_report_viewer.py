"""Seed 003 §3.4.3: the report-viewing URL HIS opens (query.htm), hospital prefixes included."""

from __future__ import annotations

import pytest

from agent.uplinks.remote_imaging.viewer import ReportViewerSection, viewer_url

URL = "http://10.120.6.28:5063/clinic/html/query.htm"


def section(**changes: object) -> ReportViewerSection:
    return ReportViewerSection.model_validate(
        {"enabled": True, "url": URL, "hospital_id": "7173", **changes}
    )


def test_the_seed_s_example_and_the_prefixes():
    assert viewer_url(section(), {"sick_id": "brid00"}) == f"{URL}?sick_id=7173_brid00"
    assert viewer_url(section(), {"exam_no": "yjdjh0", "inpatient_no": "Z9"}) == (
        f"{URL}?exam_no=7173_yjdjh0&inpatient_no=Z9"
    )
    assert viewer_url(section(), {"sick_id": "7173_brid00"}) == f"{URL}?sick_id=7173_brid00"
    assert viewer_url(section(), {"sick_id": "b1"}, "8001") == f"{URL}?sick_id=8001_b1"


def test_at_least_one_known_parameter_and_a_complete_config():
    with pytest.raises(ValueError, match="at least one"):
        viewer_url(section(), {"sick_id": ""})
    with pytest.raises(ValueError, match=r"not a parameter of query\.htm: SICK_ID"):
        viewer_url(section(), {"SICK_ID": "x"})
    with pytest.raises(ValueError, match="url and hospital_id are required"):
        ReportViewerSection(enabled=True)
