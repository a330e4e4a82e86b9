"""Seed 003 §3.2.1.2 / §3.2.3.2.2 end to end: each image mode (store, qr, url, none), exams with
no images in our spool pushed once final (an ECG), push_from_status, and an exam as lean as the
seed's table allows — the imaging domain, the real uplink and the city platform's simulator."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.forwarding import rebase_queued_files
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.simulators.remote_imaging import RemoteImagingSimulator
from agent.uplinks.remote_imaging.uplink import RemoteImagingUplink
from drivers.dicom.forward import FORWARDING
from tests.dicom_files import JPEG_8X8
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.integration.test_remote_imaging import FAST, city_platform, uplink_config, write_instance
from tests.unit.test_imaging_index import STUDY, Index, exam, exam_doc, stored
from tests.unit.test_remote_imaging_codec import config_for

VIEWER = "https://pacs.hospital.example/viewer?study={study_uid}"


@dataclass
class Site:
    index: Index
    platform: RemoteImagingSimulator
    tmp: Any

    async def run(self, *events: Event, mode: str = "store", **uplink: Any) -> dict[str, Any]:
        """Ingest `events` (a stable study among them if it says so) and deliver everything."""
        settings = {"image_mode": mode, "image_url_template": VIEWER, **uplink}
        up = RemoteImagingUplink(
            "remote_imaging", uplink_config(self.platform, **settings), FORWARDING
        )
        async with run_dispatcher(self.index.journal, up, FAST):
            await self.index.ingest(*events)
            return await eventually(lambda: settled(self.index.journal))

    def instance(self) -> Event:
        """A real DICOM file of the index's test study (P001, ACC001), as the SCP reports it."""
        study = {"patient_id": "P001", "study_uid": STUDY, "accession": "ACC001"}
        return stored("1", path=str(write_instance(self.tmp, study)))


def seed_003(**options: Any) -> ImagingConfig:
    """The imaging domain forwarding to a remote_imaging uplink, planned as the wiring does."""
    return ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["remote_imaging"], **options},
        context={"uplink_plans": {"remote_imaging": UPLINKS["remote_imaging"].plan}},
    )


async def settled(journal: Journal) -> dict[str, Any] | None:
    rows = await outbox_rows(journal)
    done = rows and all(r["state"] in ("delivered", "dead") for r in rows.values())
    return rows if done else None


@pytest.fixture
async def site(open_journal, tmp_path) -> AsyncIterator[Site]:
    handler = ImagingHandler("imaging", seed_003())
    async with city_platform() as platform:
        yield Site(Index(await open_journal.open(handlers=(handler,))), platform, tmp_path)


async def stable_study(site: Site, mode: str, **uplink: Any) -> dict[str, Any]:
    await site.index.ingest(site.instance(), exam(exam_doc(accessionNo="ACC001")))
    return await site.run(
        Event("imaging.study_stable", "imaging", await last_received(site)), mode=mode, **uplink
    )


async def last_received(site: Site) -> dict[str, Any]:
    ((last,),) = await site.index.rows(
        "SELECT last_received FROM im_studies WHERE study_uid = ?", STUDY
    )
    return {"study_uid": STUDY, "last_received": last}


async def test_store_pushes_then_stores_the_images(site):
    rows = await stable_study(site, "store")
    [pushed] = site.platform.received.pushes
    assert pushed["imageList"][0]["studyUID"] == STUDY and pushed["imageList"][0]["imageCount"] == 1
    assert len(site.platform.received.instances) == 1
    assert all(r["state"] == "delivered" for r in rows.values())


def test_url_mode_needs_a_url_template():
    with pytest.raises(ValueError, match="image_url_template"):
        config_for(image_mode="url")


async def test_qr_pushes_the_study_and_leaves_the_images_to_the_platform_s_retrieve(site):
    rows = await stable_study(site, "qr", image_url_template=None)
    [pushed] = site.platform.received.pushes
    assert pushed["imageList"][0]["studyUID"] == STUDY and "imageUrl" not in pushed["imageList"][0]
    assert site.platform.received.instances == {}  # it pulls them from our Q/R SCP
    instance = next(r for r in rows.values() if r["kind"] == "dicom.instance")
    assert (instance["state"], instance["response"]) == ("delivered", "not sent: image_mode = 'qr'")


async def test_url_pushes_a_viewer_link_and_no_images(site):
    await stable_study(site, "url")
    [pushed] = site.platform.received.pushes
    assert pushed["imageList"][0]["imageUrl"] == VIEWER.format(study_uid=STUDY)
    assert site.platform.received.instances == {}


async def test_none_pushes_the_exam_alone(site):
    await stable_study(site, "none")
    [pushed] = site.platform.received.pushes
    assert "imageList" not in pushed and site.platform.received.instances == {}


async def test_an_ecg_exam_without_images_is_pushed_when_its_report_is_final(site):
    ecg = exam_doc("ECG1", exam_class="ECG")
    ecg["examInfo"]["examOrganList"] = [{"organName": "心脏"}]
    preliminary = exam_doc("ECG1", exam_class="ECG", status="60")
    await site.index.ingest(exam(preliminary))
    assert await site.index.messages() == []  # not final: nothing yet
    await site.run(exam(ecg))
    [pushed] = site.platform.received.pushes
    assert (pushed["examNo"], pushed["examInfo"]["examClass"]) == ("ECG1", "ECG")
    assert "imageList" not in pushed
    [(kind, key, _)] = await site.index.messages()
    assert (kind, key) == ("exam.push", "exam:ECG1")


async def test_an_exam_whose_images_stay_in_the_hospital_pacs_gets_its_viewer_link(site):
    elsewhere = exam_doc("E9", studyUID="1.2.826.0.1.3680043.8.498.999")
    await site.run(exam(elsewhere), mode="url")
    [pushed] = site.platform.received.pushes
    [image] = pushed["imageList"]
    assert image["studyUID"] == "1.2.826.0.1.3680043.8.498.999"
    assert image["imageUrl"] == VIEWER.format(study_uid="1.2.826.0.1.3680043.8.498.999")
    assert "imageCount" not in image  # not ours to count


async def test_push_from_status_70_waits_for_the_final_report_images_too(open_journal, tmp_path):
    handler = ImagingHandler("imaging", seed_003(push_from_status="70"))
    async with city_platform() as platform:
        site = Site(Index(await open_journal.open(handlers=(handler,))), platform, tmp_path)
        await site.index.ingest(site.instance(), exam(exam_doc(accessionNo="ACC001", status="60")))
        await site.index.ingest(Event("imaging.study_stable", "imaging", await last_received(site)))
        assert await site.index.messages() == []  # preliminary: neither push nor images
        await site.run(exam(exam_doc(accessionNo="ACC001", status="70")))
        assert [p["examInfo"]["examStatus"] for p in platform.received.pushes] == ["70"]
        assert len(platform.received.instances) == 1


async def test_an_exam_as_lean_as_the_seed_allows_is_accepted_and_pushed(site):
    lean = exam_doc("E5")
    del lean["examInfo"]["examItemList"], lean["examInfo"]["examOrganList"]
    lean["patientInfo"]["identity"] = [{"idType": "1"}]
    lean["reportList"]["reportImage"] = [{"rptImgDesc": "图1"}]
    await site.run(exam(lean))
    [pushed] = site.platform.received.pushes
    assert pushed["examNo"] == "E5" and "examItemList" not in pushed["examInfo"]


def picture(mode: str, fmt: str) -> tuple[bytes, bytes]:
    """A small image in `fmt` (PNG or BMP) and its pixels as 8-bit RGB or grey bytes."""
    size = 5 * 3
    if mode == "RGB":
        raw = bytes(v for i in range(size) for v in (i * 37 % 256, i * 11 % 256, 200))
    else:
        raw = bytes(i * 17 for i in range(size))
    image = Image.frombytes(mode, (5, 3), raw)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue(), raw


def received_pixels(site: Site, sop_uid: str) -> tuple[str, str, bytes]:
    """(transfer syntax, photometric interpretation, pixel bytes) the platform got."""
    stored = site.platform.received.instances[sop_uid]
    ds = dcmread(io.BytesIO(stored.data), force=True)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(stored.transfer_syntax)
    return stored.transfer_syntax, ds.PhotometricInterpretation, ds.pixel_array.tobytes()


async def test_report_images_go_into_the_study_as_secondary_capture(site):
    jpeg = site.tmp / "report.jpg"
    jpeg.write_bytes(JPEG_8X8)
    png_bytes, png_pixels = picture("RGB", "PNG")
    bmp_bytes, bmp_pixels = picture("L", "BMP")
    (site.tmp / "chart.png").write_bytes(png_bytes)
    (site.tmp / "scan.bmp").write_bytes(bmp_bytes)
    names = {"jpg": "a" * 64 + ".jpg", "png": "b" * 64 + ".png", "bmp": "d" * 64 + ".bmp"}
    files = [
        {"name": names["jpg"], "kind": "report_image", "size": 170, "path": str(jpeg)},
        {"name": names["png"], "kind": "report_image", "size": len(png_bytes),
         "path": str(site.tmp / "chart.png")},
        {"name": names["bmp"], "kind": "report_image", "size": len(bmp_bytes),
         "path": str(site.tmp / "scan.bmp")},
    ]  # fmt: skip
    attached = Event("imaging.exam_files", "api", {"exam_no": "E001", "files": files})
    await site.index.ingest(site.instance(), exam(exam_doc(accessionNo="ACC001")), attached)
    rows = await site.run(Event("imaging.study_stable", "imaging", await last_received(site)))
    assert {r["state"] for r in rows.values()} == {"delivered"}
    [pushed] = site.platform.received.pushes
    listed = {e["rptImgPath"]: e for e in pushed["reportList"]["reportImage"]}
    assert set(listed) == set(names.values())
    assert {e["rptImgType"] for e in listed.values()} == {"DICOM"}
    jpeg_uid = listed[names["jpg"]]["sopInstanceUID"]
    assert site.platform.received.instances[jpeg_uid].transfer_syntax == JPEGBaseline8Bit
    # PNG and BMP: decoded, sent lossless; the platform reads the very pixels posted
    png = received_pixels(site, listed[names["png"]]["sopInstanceUID"])
    assert png == (ExplicitVRLittleEndian, "RGB", png_pixels)
    bmp = received_pixels(site, listed[names["bmp"]]["sopInstanceUID"])
    assert bmp == (ExplicitVRLittleEndian, "MONOCHROME2", bmp_pixels)
    assert len(site.platform.received.instances) == 4  # the CT image and the report's three


async def test_report_images_by_path_are_listed_not_stored(site):
    jpeg = site.tmp / "report.jpg"
    jpeg.write_bytes(JPEG_8X8)
    bmp_bytes, _ = picture("RGB", "BMP")
    (site.tmp / "scan.bmp").write_bytes(bmp_bytes)
    png_bytes, png_pixels = picture("RGB", "PNG")
    (site.tmp / "chart.png").write_bytes(png_bytes)
    files = [
        {"name": "a" * 64 + ".jpg", "kind": "report_image", "size": 170, "path": str(jpeg)},
        {"name": "d" * 64 + ".bmp", "kind": "report_image", "size": len(bmp_bytes),
         "path": str(site.tmp / "scan.bmp")},
        {"name": "b" * 64 + ".png", "kind": "report_image", "size": len(png_bytes),
         "path": str(site.tmp / "chart.png")},
    ]  # fmt: skip
    attached = Event("imaging.exam_files", "api", {"exam_no": "E001", "files": files})
    await site.index.ingest(site.instance(), exam(exam_doc(accessionNo="ACC001")), attached)
    rows = await site.run(
        Event("imaging.study_stable", "imaging", await last_received(site)),
        report_images="path",
        report_image_path_prefix="rpt/",
    )
    assert {r["state"] for r in rows.values()} == {"delivered"}
    [pushed] = site.platform.received.pushes
    entries = pushed["reportList"]["reportImage"]
    by_path = {(e["rptImgType"], e["rptImgPath"]) for e in entries if e["rptImgType"] != "DICOM"}
    assert by_path == {("JPG", "rpt/" + "a" * 64 + ".jpg"), ("BMP", "rpt/" + "d" * 64 + ".bmp")}
    [dicom] = [e for e in entries if e["rptImgType"] == "DICOM"]  # PNG: no type of its own
    assert dicom["rptImgPath"] == "b" * 64 + ".png"
    assert received_pixels(site, dicom["sopInstanceUID"])[2] == png_pixels
    assert len(site.platform.received.instances) == 2  # the CT image and the PNG


async def test_a_report_image_posted_after_the_push_follows_with_a_new_push(site):
    await stable_study(site, "store")
    jpeg = site.tmp / "late.jpg"
    jpeg.write_bytes(JPEG_8X8)
    files = [{"name": "c" * 64 + ".jpg", "kind": "report_image", "size": 170, "path": str(jpeg)}]
    await site.run(Event("imaging.exam_files", "api", {"exam_no": "E001", "files": files}))
    first, second = site.platform.received.pushes
    assert "reportImage" not in first.get("reportList", {})
    [listed] = second["reportList"]["reportImage"]
    assert listed["sopInstanceUID"] in site.platform.received.instances


async def test_a_moved_state_folder_still_sends_its_queued_report_images(open_journal, tmp_path):
    state = tmp_path / "state"
    (state / "exam-files").mkdir(parents=True)
    handler = ImagingHandler("imaging", seed_003())
    async with city_platform() as platform:
        journal = await open_journal.open(state / "journal.db", handlers=(handler,))
        site = Site(Index(journal), platform, tmp_path)
        await stable_study(site, "store")  # the push and the CT image are delivered
        name = "e" * 64 + ".jpg"
        (state / "exam-files" / name).write_bytes(JPEG_8X8)
        files = [{"name": name, "kind": "report_image", "size": len(JPEG_8X8),
                  "path": str(state / "exam-files" / name)}]  # fmt: skip
        await site.index.ingest(
            Event("imaging.exam_files", "api", {"exam_no": "E001", "files": files})
        )
        assert await site.index.rows("SELECT path FROM im_exam_files") == [(f"exam-files/{name}",)]
        await journal.close()  # the report image is still queued when the folder moves
        moved = tmp_path / "restored"
        state.rename(moved)
        journal = await open_journal.open(moved / "journal.db", handlers=(handler,))
        assert await journal.run(rebase_queued_files) == 1  # what the runtime runs at start
        rows = await Site(Index(journal), platform, tmp_path).run()
    assert {r["state"] for r in rows.values()} == {"delivered"}
    second = platform.received.pushes[-1]
    [listed] = second["reportList"]["reportImage"]
    assert listed["sopInstanceUID"] in platform.received.instances
