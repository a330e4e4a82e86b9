"""JPEG + sidecar → DICOM: JPEGs made by dcmtk's encoder, results read back by pydicom and dcmtk."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from drivers.dicom import convert
from drivers.dicom.convert import Settings, StudyRef
from drivers.dicom.errors import CaptureError
from drivers.dicom.jpeg import jpeg_info
from drivers.dicom.sidecar import parse_sidecar
from tests.peers import dcmtk

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2024, 1, 15, 1, 2, 3, tzinfo=UTC)
SIDECAR = {
    "patient_id": "P0001",
    "patient_name": "Wang^Wei=王^伟",
    "accession": "ACC-1",
    "study_date": "2024-01-15",
    "modality": "ES",
    "sex": "男",
    "birth_date": "19700102",
    "image_number": 3,
}
# Type 1 (must have a value) and Type 2 (must be present) attributes of both IODs' modules.
TYPE1 = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PixelData", "SpecificCharacterSet",
]  # fmt: skip
TYPE2 = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Manufacturer",
    "InstanceNumber", "PatientOrientation",
]  # fmt: skip


def make_jpeg(tmp_path: Path, *, color: bool = True, sampling: str = "+s2") -> bytes:
    """A real baseline JPEG (24x16) encoded by dcmtk's dcmcjpeg, taken out of its fragment."""
    rows, columns, samples = 16, 24, 3 if color else 1
    ds = Dataset()
    ds.SOPClassUID = convert.SECONDARY_CAPTURE
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes((i * 7) % 256 for i in range(rows * columns * samples))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    raw, out = tmp_path / "raw.dcm", tmp_path / "jpeg.dcm"
    ds.save_as(raw, enforce_file_format=True)
    subprocess.run([dcmtk("dcmcjpeg"), "+eb", sampling, str(raw), str(out)], check=True)
    return next(generate_frames(dcmread(out).PixelData, number_of_frames=1))


def convert_one(jpeg: bytes, study: StudyRef | None = None, **changes: object) -> Dataset:
    sidecar = parse_sidecar(json.dumps({**SIDECAR, **changes}).encode())
    return convert.build(
        jpeg, sidecar, image_sha256="ab" * 32, study=study, captured_at=AT, tz=TZ,
        settings=Settings(manufacturer="ACME"),
    )  # fmt: skip


def test_frame_header_and_photometric(tmp_path: Path) -> None:
    info = jpeg_info(make_jpeg(tmp_path))
    assert (info.rows, info.columns, info.components) == (16, 24, 3)
    assert info.photometric == "YBR_FULL_422"
    assert jpeg_info(make_jpeg(tmp_path, sampling="+s4")).photometric == "YBR_FULL"
    assert jpeg_info(make_jpeg(tmp_path, color=False)).photometric == "MONOCHROME2"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b"\x89PNG\r\n\x1a\n" + b[8:], "not_jpeg"),
        (lambda b: b[: len(b) // 2], "truncated_jpeg"),
        (lambda b: b.replace(b"\xff\xc0", b"\xff\xc2", 1), "unsupported_jpeg"),
    ],
)
def test_bad_images_are_refused(tmp_path: Path, mangle: object, reason: str) -> None:
    jpeg = make_jpeg(tmp_path)
    with pytest.raises(CaptureError) as caught:
        jpeg_info(mangle(jpeg))  # type: ignore[operator]
    assert caught.value.reason == reason


def test_endoscopy_image_is_a_valid_vl_endoscopic_object(tmp_path: Path) -> None:
    jpeg = make_jpeg(tmp_path)
    data = convert.encode(convert_one(jpeg))
    path = tmp_path / "out.dcm"
    path.write_bytes(data)
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.SOPClassUID == convert.VL_ENDOSCOPIC == ds.file_meta.MediaStorageSOPClassUID
    for keyword in TYPE1:
        assert keyword in ds and ds[keyword].value not in (None, ""), keyword
    for keyword in [*TYPE2, "AcquisitionContextSequence", "ContentDate", "ContentTime"]:
        assert keyword in ds, keyword
    assert ds.ImageType == ["ORIGINAL", "PRIMARY"]
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.PlanarConfiguration == 0
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (16, 24, 3)
    assert str(ds.PatientName) == "Wang^Wei=王^伟" and ds.PatientSex == "M"
    assert ds.StudyDate == "20240115" and ds.ContentTime == "090203"  # local (UTC+8)
    assert ds.SeriesNumber == 1 and ds.InstanceNumber == 3 and ds.LossyImageCompression == "01"
    assert next(generate_frames(ds.PixelData, number_of_frames=1)).rstrip(b"\0") == jpeg
    dump = subprocess.run(
        [dcmtk("dcmdump"), "-dc", str(path)], capture_output=True, text=True, check=True
    )
    assert "E: " not in dump.stderr + dump.stdout and "Wang^Wei=王^伟" in dump.stdout
    # dcmtk decodes the encapsulated JPEG with the declared photometric interpretation.
    pnm = tmp_path / "out.ppm"
    subprocess.run([dcmtk("dcmj2pnm"), "+op", str(path), str(pnm)], check=True)
    assert pnm.read_bytes().startswith(b"P6\n24 16\n255\n")


def test_ultrasound_and_request_form_are_secondary_capture(tmp_path: Path) -> None:
    jpeg = make_jpeg(tmp_path, color=False)
    us = convert_one(jpeg, modality="US")
    assert us.SOPClassUID == convert.SECONDARY_CAPTURE and us.ConversionType == "WSD"
    assert us.PhotometricInterpretation == "MONOCHROME2" and "PlanarConfiguration" not in us
    form = convert_one(jpeg, request_form=True)
    assert form.SOPClassUID == convert.SECONDARY_CAPTURE and form.ConversionType == "SD"
    assert form.SeriesNumber == 0 and form.SeriesInstanceUID != us.SeriesInstanceUID
    assert form.StudyInstanceUID == us.StudyInstanceUID == convert_one(jpeg).StudyInstanceUID
    for ds in (us, form):
        for keyword in TYPE1:
            assert ds.get(keyword) not in (None, ""), keyword
        assert dcmread(_reread(tmp_path, ds)).SOPInstanceUID == ds.SOPInstanceUID


def _reread(tmp_path: Path, ds: Dataset) -> Path:
    path = tmp_path / "reread.dcm"
    path.write_bytes(convert.encode(ds))
    return path


def test_uids_are_deterministic_and_join_the_indexed_study(tmp_path: Path) -> None:
    jpeg = make_jpeg(tmp_path)
    first, again = convert_one(jpeg), convert_one(jpeg)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    other = convert.build(
        jpeg, parse_sidecar(json.dumps(SIDECAR).encode()), image_sha256="cd" * 32,
        study=None, captured_at=AT, tz=TZ, settings=Settings(),
    )  # fmt: skip
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.StudyInstanceUID == first.StudyInstanceUID  # one exam, one study
    assert convert_one(jpeg, accession="ACC-2").StudyInstanceUID != first.StudyInstanceUID
    joined = convert_one(jpeg, study=StudyRef("1.2.840.99.1", "P0001"))
    assert joined.StudyInstanceUID == "1.2.840.99.1"
    given = convert_one(jpeg, study_uid="1.2.840.99.2")
    assert given.StudyInstanceUID == "1.2.840.99.2"
    with pytest.raises(CaptureError) as caught:
        convert_one(jpeg, study=StudyRef("1.2.840.99.1", "SOMEONE-ELSE"))
    assert caught.value.reason == "patient_mismatch"
    rooted = convert.uid(Settings(uid_root="1.2.826.0.1.99."), "sop", "x")
    assert rooted.startswith("1.2.826.0.1.99.") and convert.is_uid_root("1.2.826.0.1.99.")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (json.dumps({**SIDECAR, "patient_id": "P\u00001"}).encode(), "patient_id"),
        (json.dumps({**SIDECAR, "study_date": "15/01/2024"}).encode(), "study_date"),
        (json.dumps({**SIDECAR, "accession": "A" * 17}).encode(), "accession"),
        (json.dumps({**SIDECAR, "patient_name": "a\\b"}).encode(), "patient_name"),
        (json.dumps({**SIDECAR, "colour": "red"}).encode(), "colour"),
        (json.dumps({k: v for k, v in SIDECAR.items() if k != "patient_id"}).encode(), "patient"),
    ],
)
def test_bad_sidecars_are_refused(raw: bytes, detail: str) -> None:
    with pytest.raises(CaptureError) as caught:
        parse_sidecar(raw)
    assert caught.value.reason == "bad_sidecar" and detail in str(caught.value)


def test_sidecar_forms() -> None:
    sidecar = parse_sidecar(
        "\ufeff".encode() + json.dumps({**SIDECAR, "study_time": "09:30", "x": 1}).encode(),
        ignore_unknown=True,
    )
    assert (sidecar.study_date, sidecar.study_time, sidecar.sex) == ("20240115", "0930", "M")
    gb = json.dumps({**SIDECAR, "patient_name": "王伟"}, ensure_ascii=False).encode("gb18030")
    assert parse_sidecar(gb, encoding="gb18030").patient_name == "王伟"
