"""`tags.read_routing`: what forwarding needs from a spool file, the same values as the
identity the SCP journals, without pydicom when those tags are plain ASCII."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.dicom import tags
from tests.integration.test_remote_imaging import new_study, write_instance


def test_a_utf8_patient_name_keeps_the_routing_read_off_pydicom(tmp_path, monkeypatch):
    path = write_instance(tmp_path, new_study()["study"])  # PatientName 张^三, ISO_IR 192
    identity = tags.read_identity(path)
    monkeypatch.setattr(tags, "read_identity", _no_fallback)
    routing = tags.read_routing(path)
    assert routing == {key: identity[key] for key in ("transfer_syntax", *tags.ROUTING_KEYS)}


def test_a_non_ascii_routing_tag_is_read_by_pydicom(tmp_path):
    study = new_study()["study"]
    path = write_instance(tmp_path, study, AccessionNumber="检查001")
    assert tags.read_routing(path)["accession_number"] == "检查001"


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tags.read_routing(tmp_path / "gone.dcm")


def _no_fallback(path: Path) -> dict[str, object]:
    raise AssertionError(f"read_identity was asked for {path.name}")
