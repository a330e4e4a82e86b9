"""C-FIND matching rules of docs/dicom-conformance.md that the dcmtk test does not exercise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from agent.imaging.study_index import StudyIndexReader
from agent.vocabulary.study_index import BadIdentifier
from tests.integration.test_dicom_qr import _index, _instance

STUDY = "1.2.826.0.1.3680043.8.498.1510"


@pytest.fixture
def index(tmp_path: Path) -> StudyIndexReader:
    attrs: dict[str, Any] = {"PatientID": "P1", "PatientName": "Wang^Wei^^=王^伟"}
    attrs |= {"PatientBirthDate": "19700102", "PatientSex": "M", "StudyDate": "20240115"}
    attrs |= {"StudyTime": "120030", "AccessionNumber": "ACC[1]", "Modality": "CT"}
    attrs |= {"SeriesNumber": 3}
    ds = _instance(STUDY, f"{STUDY}.1", f"{STUDY}.1.1", InstanceNumber=7, **attrs)
    _index(tmp_path, [(ds, ExplicitVRLittleEndian)])
    return StudyIndexReader(tmp_path / "journal.db")


def find(index: StudyIndexReader, level: str = "STUDY", **keys: Any) -> list[Dataset]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    identifier.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    found = index.find(identifier, patient_root=False)
    return [found.response(row, "EDGE") for row in found.rows]


@pytest.mark.parametrize(
    "name", ["WANG^WEI", "wang^wei^^", "Wang^W?i", "王^伟", "*伟", "Wang^Wei=王^伟"]
)
def test_person_names_match_case_insensitively_by_component_group(
    index: StudyIndexReader, name: str
) -> None:
    assert len(find(index, PatientName=name)) == 1


def test_dates_times_numbers_and_literal_brackets(index: StudyIndexReader) -> None:
    with pytest.warns(UserWarning, match="DA"):
        assert len(find(index, StudyDate="2024.01.01-2024.01.31")) == 1  # the legacy form
    assert len(find(index, StudyTime="-1200")) == 1  # 12:00:30 is within "up to 12:00"
    assert find(index, StudyTime="-1159") == []
    assert len(find(index, AccessionNumber="ACC[1]")) == 1  # not a GLOB character class
    assert len(find(index, AccessionNumber="ACC[*")) == 1
    assert find(index, AccessionNumber="acc[1]") == []  # text other than names: exact case
    assert len(find(index, "SERIES", SeriesNumber="2\\3", SeriesInstanceUID="")) == 1
    assert len(find(index, "IMAGE", InstanceNumber=7, SeriesInstanceUID="")) == 1


def test_unmatchable_values_are_refused_with_the_offending_tag(index: StudyIndexReader) -> None:
    with pytest.warns(UserWarning, match="DA"), pytest.raises(BadIdentifier) as bad_date:
        find(index, StudyDate="20240115-2024")
    assert (bad_date.value.status, bad_date.value.tag) == (0xC000, 0x00080020)
    with pytest.warns(UserWarning, match="TM"), pytest.raises(BadIdentifier) as bad_time:
        find(index, StudyTime="25h")
    assert (bad_time.value.status, bad_time.value.tag) == (0xC000, 0x00080030)
