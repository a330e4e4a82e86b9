"""The insurance imaging cloud's front-end simulator against the agent's real pieces: it polls the
report service by each type and by number, fetches the image links byte for byte, answers the QR
request of an audited report (also after being down), takes the deletion notice and decrypts the
viewer launch's ID number with its own SM2 key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import UPLINKS
from agent.simulators.insurance_imaging import (
    InsuranceImagingSimulator,
    InsuranceImagingSimulatorConfig,
)
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import InsuranceImagingUplink, launcher
from agent.web.listener import ListenerCounters, start_listener
from tests.dispatching import run_dispatcher
from tests.integration.test_insurance_qr import FAST
from tests.platform_routes import free_port
from tests.unit.test_imaging_index import STUDY, exam, exam_doc, stored

ID_NUMBER = "33092219630901501X"


@dataclass
class Site:
    journal: Journal
    simulator: InsuranceImagingSimulator
    config: InsuranceImagingConfig
    files: dict[str, bytes]  # SOP Instance UID -> the bytes the agent received


@pytest.fixture
async def site(open_journal, tmp_path: Path) -> AsyncIterator[Site]:
    listener_port = free_port()
    listener_url = f"http://127.0.0.1:{listener_port}"
    simulator = InsuranceImagingSimulator(
        "insurance",
        InsuranceImagingSimulatorConfig(
            type="insurance_imaging", port=0, report_url=f"{listener_url}/pacs/reportInfo"
        ),
    )
    await simulator.start()
    config = InsuranceImagingConfig.model_validate(
        {
            "type": "insurance_imaging",
            "hospital_id": "H33010200001",
            "frontend_url": simulator.url,
            "listener": {"enabled": True, "port": listener_port, "allow": ["127.0.0.1/32"]},
            "wado": {"enabled": True, "base_url": listener_url},
            "qr": {"enabled": True},
            "deletion": {"enabled": True, "url": f"{simulator.url}/getway/image/delete"},
            "viewer": {
                "enabled": True,
                "sm2_public_key": simulator.public_key,
                "hrball_url": f"{simulator.url}/hrball/",
            },
        }
    )
    plans = {"insurance": UPLINKS["insurance_imaging"].plan}
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["insurance"]}, context={"uplink_plans": plans}
    )
    journal: Journal = await open_journal.open(handlers=(ImagingHandler("imaging", imaging),))
    files, events = {}, []
    for sop, series in (("1", "1"), ("2", "1"), ("3", "2")):
        path = tmp_path / f"{sop}.dcm"
        path.write_bytes(b"\0" * 128 + b"DICM" + sop.encode() * 5000)
        files[f"{STUDY}.{series}.{sop}"] = path.read_bytes()
        events.append(stored(sop, series=series, number=int(sop), path=str(path)))
    await journal.ingest(events)

    async def emit(event: Event) -> bool:
        return (await journal.ingest([event]))[0]

    make = UPLINKS["insurance_imaging"].endpoints
    assert make is not None
    runner = await start_listener(
        "insurance", make("insurance", config), emit, journal.run, ListenerCounters()
    )
    try:
        yield Site(journal, simulator, config, files)
    finally:
        await runner.cleanup()
        await simulator.stop()


def audited() -> Event:
    document = exam_doc("E1", status="70", accessionNo="ACC001", time="2026-12-07 09:00:00")
    document["reportList"]["affirmTime"] = "2026-12-07 10:00:00"
    return exam(document)


async def test_the_front_end_finds_fetches_and_is_told_everything(site):
    sim = site.simulator
    uplink = InsuranceImagingUplink("insurance", site.config)
    async with run_dispatcher(site.journal, uplink, FAST):
        await sim.go_down("refuse")  # the front-end is down when the report is audited
        await site.journal.ingest([audited()])
        assert sim.received.qr == []
        await sim.come_up()
        await sim.wait_until(lambda r: len(r.qr) == 1)
        # 4.1.2 by each type and by number; 4.2 the links, byte for byte
        day = {"startTime": "2026-12-07 00:00:00", "endTime": "2026-12-07 23:59:59"}
        for kind in (1, 3):
            answer = await sim.poll({**day, "type": kind})
            assert [r["examNo"] for r in answer["data"]] == ["E1"], kind
        (record,) = (await sim.poll({"accessionNo": "ACC001"}))["data"]
        fetched = [await sim.fetch(link) for link in record["imagePath"]]
        assert fetched == list(site.files.values())
        # 4.5: PACS deletes series 2; the front-end is told and no longer finds it
        deletion = {"accession": "ACC001", "by": "赵医生", "at": "2026-12-07T11:00:00",
                    "series_uids": [f"{STUDY}.2"]}  # fmt: skip
        await site.journal.ingest([Event("imaging.deletion", "api", deletion)])
        await sim.wait_until(lambda r: len(r.notices) == 1)
    assert sim.received.qr[0]["accessNumber"] == "ACC001"
    notice = sim.received.notices[0]
    assert notice["operateDoctorName"] == "赵医生"
    assert notice["operateDateTime"] == "2026-12-07 11:00:00"
    (record,) = (await sim.poll({"accessionNo": "ACC001"}))["data"]
    assert len(record["imagePath"]) == 2
    kept = [await sim.fetch(link) for link in record["imagePath"]]
    assert kept == list(site.files.values())[:2]


async def test_the_front_end_decrypts_the_viewer_launch(site):
    doctor = {
        "user_id": "1001", "action": "login", "name": "张医生", "department": "放射科",
        "department_code": "0301", "sex": "female", "role": "technician",
        "insurance_code": "T330100000001", "id_card_no": ID_NUMBER,
    }  # fmt: skip
    forms = launcher(site.config)(doctor)
    async with aiohttp.ClientSession() as client, client.get(forms["http"]) as answer:
        assert (await answer.json())["code"] == 200
    (launch,) = site.simulator.received.launches
    assert launch["doctorIdCardNo"] == ID_NUMBER and launch["doctorName"] == "张医生"
    assert (launch["doctorSex"], launch["doctorType"]) == ("2", "2")


async def test_the_front_end_refuses_what_the_seed_does_not_allow(site):
    url = site.simulator.url
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{url}/getway/reportAndFilm/api/qrurl?accessNumber=A1") as answer:
            assert (await answer.json())["code"] == 202  # modality and hospitalId missing
        bad = {"patientName": "x", "accessionNo": "A1", "hospitalId": "H33010200001",
               "operateDoctorName": "y", "operateDateTime": "2026/12/07"}  # fmt: skip
        async with client.post(f"{url}/getway/image/delete", json=bad) as answer:
            assert (await answer.json())["code"] == 202
        forged = "hisUserId=1&type=1&doctorName=a&department=b&doctorSex=1&doctorIdCardNo=00"
        forged += "&doctorCode=c&doctorType=1&hospitalId=H33010200001"
        async with client.get(f"{url}/hrball/?{forged}") as answer:
            assert (await answer.json())["code"] == 202
    verdicts = [a.verdict for a in site.simulator.ledger.arrivals]
    assert verdicts == ["refused", "refused", "refused"]


def test_its_sm2_key_outlives_a_restart_with_a_state_folder(tmp_path: Path):
    config = InsuranceImagingSimulatorConfig(type="insurance_imaging")
    first = InsuranceImagingSimulator("insurance", config, state_dir=tmp_path)
    again = InsuranceImagingSimulator("insurance", config, state_dir=tmp_path)
    other = InsuranceImagingSimulator("insurance", config)
    assert first.public_key == again.public_key != other.public_key
    assert (tmp_path / "sm2-private-key.hex").stat().st_mode & 0o777 == 0o600
