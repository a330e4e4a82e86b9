"""Identifying tags of files written by pydicom: values, absent tags, refusals, no pixel read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from drivers.dicom.scp import DicomScpConfig
from drivers.dicom.tags import (
    KEY_OBJECT_SELECTION,
    UnreadableDataset,
    _values,
    _walk,
    read_identity,
)
from tests.dicom_files import make_jpeg_baseline, make_study, save


def test_identity_of_explicit_implicit_and_jpeg_files(tmp_path: Path):
    files = make_study(tmp_path, "P-1", series=[("CT", 1), ("MR", 1)], accession="A9")
    files.append(make_jpeg_baseline(tmp_path / "j.dcm", "P-1", "1.2.3", accession="A9"))
    for path in files:
        ds = dcmread(path)
        identity = read_identity(path)
        assert identity["transfer_syntax"] == ds.file_meta.TransferSyntaxUID
        assert identity["sop_instance_uid"] == ds.SOPInstanceUID
        assert identity["series_uid"] == ds.SeriesInstanceUID
        assert identity["patient_id"] == "P-1" and identity["accession_number"] == "A9"
        assert identity["patient_name"] == "Test^Patient"
        assert identity["series_number"] == ds.SeriesNumber
        assert identity["instance_number"] == 1


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_big_endian_and_deflated(tmp_path: Path, syntax: str):
    source = make_study(tmp_path / "in", "P-2", series=[("CT", 1)])[0]
    ds = Dataset(dcmread(source))  # a plain Dataset: pydicom converts it to any byte order
    path = save(ds, tmp_path / "x.dcm", UID(syntax))
    assert read_identity(path)["sop_instance_uid"] == ds.SOPInstanceUID


def test_absent_tags_are_empty_or_null_and_chinese_names_decode(tmp_path: Path):
    ds = dcmread(make_study(tmp_path / "in", "P-3", series=[("CT", 1)])[0])
    del ds.InstanceNumber, ds.BodyPartExamined
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "张^三"
    identity = read_identity(save(ds, tmp_path / "x.dcm"))
    assert identity["instance_number"] is None and identity["body_part"] == ""
    assert identity["patient_name"] == "张^三"


@pytest.mark.parametrize("cut", [1, 100, 600])
def test_truncated_files_are_refused(tmp_path: Path, cut: int):
    source = make_study(tmp_path / "in", "P-4", series=[("CT", 1)])[0]
    path = tmp_path / "cut.dcm"
    path.write_bytes(source.read_bytes()[:-cut])
    with pytest.raises(UnreadableDataset):
        read_identity(path)


def test_missing_study_uid_and_garbage_are_refused(tmp_path: Path):
    ds = dcmread(make_study(tmp_path / "in", "P-5", series=[("CT", 1)])[0])
    del ds.StudyInstanceUID
    with pytest.raises(UnreadableDataset, match="study_uid"):
        read_identity(save(ds, tmp_path / "x.dcm"))
    garbage = tmp_path / "g.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"NOPE" + bytes(range(256)))
    with pytest.raises(UnreadableDataset):
        read_identity(garbage)


def test_config_validation():
    base = {"type": "dicom_scp"}
    with pytest.raises(ValueError, match="allowed_calling_aes"):
        DicomScpConfig.model_validate(base)
    with pytest.raises(ValueError, match="CIDR"):
        DicomScpConfig.model_validate(
            {**base, "allowed_calling_aes": [], "allowed_addresses": ["x"]}
        )
    with pytest.raises(ValueError, match="1–16"):
        DicomScpConfig.model_validate({**base, "allowed_calling_aes": ["A" * 17]})
    with pytest.raises(ValueError, match="query_retrieve needs allowed_calling_aes"):
        DicomScpConfig.model_validate({**base, "allowed_calling_aes": []})  # Q/R open to anyone
    assert not DicomScpConfig.model_validate(
        {**base, "allowed_calling_aes": [], "query_retrieve": False}
    ).query_retrieve  # storing from any AE stays a written decision
    config = DicomScpConfig.model_validate(
        {
            **base,
            "allowed_calling_aes": ["CT1"],
            "move_destinations": {"PACS": {"host": "h", "port": 104}},
        }
    )
    assert config.host == "0.0.0.0" and config.port == 11112 and config.min_free_mb == 1024


def test_fast_path_agrees_with_pydicom(tmp_path: Path):
    """Explicit/implicit LE files, a sequence, a non-ASCII name: same answer as pydicom's walk."""
    files = make_study(tmp_path, "P-6", series=[("CT", 2), ("MR", 1)], accession="A6")
    files.append(make_jpeg_baseline(tmp_path / "j.dcm", "P-6", "1.2.6", accession="A6"))
    ds = dcmread(files[0])
    ds.SpecificCharacterSet = "GB18030"
    ds.PatientName = "李^四"
    ds.ReferencedStudySequence = [Dataset()]
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.3"
    files.append(save(ds, tmp_path / "gb.dcm"))
    files.append(save(Dataset(dcmread(files[1])), tmp_path / "imp.dcm", ImplicitVRLittleEndian))
    for path in files:
        with path.open("rb") as fp:
            read_preamble(fp, False)
            syntax = str(_read_file_meta_info(fp).TransferSyntaxUID)
            walked = _values(_walk(fp, syntax, path.stat().st_size))
        assert read_identity(path) == {"transfer_syntax": syntax, **walked}
    assert read_identity(tmp_path / "gb.dcm")["patient_name"] == "李^四"


def rejection_kos(path: Path, code: str, references: list[tuple[str, str, str]]) -> Path:
    """An IOCM Key Object Selection titled `code`, referencing (study, series, sop) instances."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(KEY_OBJECT_SELECTION)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = KEY_OBJECT_SELECTION, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = references[0][0], generate_uid()
    ds.Modality, ds.PatientID = "KO", "P001"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = code, "DCM"
    title.CodeMeaning = "Rejected for Quality Reasons"
    ds.ConceptNameCodeSequence = [title]
    evidence = []
    for study, series, sop in references:
        item, series_item, sop_item = Dataset(), Dataset(), Dataset()
        sop_item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        sop_item.ReferencedSOPInstanceUID = sop
        series_item.SeriesInstanceUID = series
        series_item.ReferencedSOPSequence = [sop_item]
        item.StudyInstanceUID = study
        item.ReferencedSeriesSequence = [series_item]
        evidence.append(item)
    ds.CurrentRequestedProcedureEvidenceSequence = evidence
    ds.save_as(path, enforce_file_format=True)
    return path


def test_an_iocm_rejection_note_names_the_instances_it_withdraws(tmp_path: Path) -> None:
    refs = [("1.2.3", "1.2.3.1", "1.2.3.1.1"), ("1.2.3", "1.2.3.2", "1.2.3.2.5")]
    identity = read_identity(rejection_kos(tmp_path / "ko.dcm", "113001", refs))
    assert identity["sop_class_uid"] == KEY_OBJECT_SELECTION
    assert identity["rejected"] == {"code": "113001", "instances": [list(r) for r in refs]}
    # A key object of another title (e.g. 113000 "Of Interest") withdraws nothing.
    other = read_identity(rejection_kos(tmp_path / "of-interest.dcm", "113000", refs))
    assert "rejected" not in other
