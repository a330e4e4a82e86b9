"""Seed 001: an audited exam's report index, then its report PDF, reach the results-sharing
platform in order, mapped by data; the simulator validates them with the same mapping."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.dispatch.dispatcher import DispatchSettings
from agent.dispatch.policy import Backoff
from agent.errors import ConfigError
from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.handler import ImagingHandler
from agent.journal.writer import Journal
from agent.plugins import PLUGIN_KINDS, UPLINKS
from agent.simulators.results_sharing import (
    ResultsSharingSimulator,
    ResultsSharingSimulatorConfig,
)
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.mapping import DEFAULT_DIR
from agent.uplinks.results_sharing.uplink import ResultsSharingUplink
from tests.dispatching import outbox_rows, run_dispatcher
from tests.helpers import eventually
from tests.unit.test_imaging_index import exam, exam_doc

FAST = DispatchSettings(
    concurrency=2, backoff=Backoff(0.01, 0.05), breaker_threshold=1000, poll_interval=0.05
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
STUDY = "1.2.826.0.1.3680043.8.498.1"


async def start_platform(mappings: Path | None = None, **settings: Any) -> ResultsSharingSimulator:
    config = ResultsSharingSimulatorConfig.model_validate(
        {"type": "results_sharing", "port": 0, "mappings": mappings, **settings}
    )
    simulator = ResultsSharingSimulator("platform", config)
    await simulator.start()
    return simulator


@pytest.fixture
async def platform() -> AsyncIterator[ResultsSharingSimulator]:
    simulator = await start_platform()
    yield simulator
    await simulator.stop()


def sharing(base_url: str, files: Path, **keys: Any) -> ResultsSharingConfig:
    return ResultsSharingConfig.model_validate(
        {
            "type": "results_sharing",
            "base_url": base_url,
            "app_id": "edge-agent",
            "app_secret": "simulator-secret",
            "org_code": "XC0001",
            "org_name": "宣城市某某医院",
            "exam_files_dir": str(files),
            "viewer_url_template": "https://10.8.0.2:8720/view?studyUID={study_uid}",
            "wado_url_template": "https://10.8.0.2:8720/wado",
            **keys,
        }
    )


async def open_agent(open_journal: Any) -> Journal:
    plans = {"sharing": UPLINKS["results_sharing"].plan}
    imaging = ImagingConfig.model_validate(
        {"type": "imaging", "forward_to": ["sharing"]}, context={"uplink_plans": plans}
    )
    journal: Journal = await open_journal.open(handlers=(ImagingHandler("imaging", imaging),))
    return journal


def audited(number: str, impression: str = "未见异常", status: str = "70") -> Event:
    doc = exam_doc(number, status=status, impression=impression, studyUID=STUDY)
    doc["reportList"] |= {"affirmTime": "2026-11-23 11:00:00", "reportNo": f"R-{number}"}
    return exam(doc)


def store_pdf(files: Path, exam_no: str, data: bytes = PDF) -> Event:
    files.mkdir(parents=True, exist_ok=True)
    name = f"{hashlib.sha256(data).hexdigest()}.pdf"
    (files / name).write_bytes(data)
    entry = {"name": name, "kind": "report_pdf", "size": len(data)}
    return Event("imaging.exam_files", "api", {"exam_no": exam_no, "files": [entry]})


async def settled(journal: Journal, count: int) -> list[dict[str, Any]] | None:
    rows = list((await outbox_rows(journal)).values())
    done = [r for r in rows if r["state"] in ("delivered", "dead")]
    return rows if len(done) >= count and len(done) == len(rows) else None


async def test_the_index_then_its_pdf_arrive_in_order_mapped_and_accepted(
    platform, open_journal, tmp_path
):
    files = tmp_path / "exam-files"
    journal = await open_agent(open_journal)
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, files))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([store_pdf(files, "E2")])  # a PDF before its report is audited
        await journal.ingest([audited("E1")])
        await journal.ingest([store_pdf(files, "E1")])  # a PDF after
        await journal.ingest([audited("E2", status="60"), audited("E2")])
        rows = await eventually(lambda: settled(journal, 4))
    assert {r["state"] for r in rows} == {"delivered"}
    sent = [(name, body["examNo"]) for name, body in platform.received.uploads]
    assert sent.index(("uploadExamIndex", "E1")) < sent.index(("uploadExamReportPdf", "E1"))
    assert sent.index(("uploadExamIndex", "E2")) < sent.index(("uploadExamReportPdf", "E2"))
    assert len(sent) == 4
    index = platform.received.records["uploadExamIndex"]["XC0001|E1"]
    assert index["patientName"] == "张三" and index["sexCode"] == "1"
    assert index["examTime"] == "2026-11-23 10:00:00"
    assert index["examItems"] == [{"itemCode": "CT01", "itemName": "胸部CT平扫"}]
    assert index["viewerUrl"] == f"https://10.8.0.2:8720/view?studyUID={STUDY}"
    pdf = next(body for name, body in platform.received.uploads if name == "uploadExamReportPdf")
    assert pdf["fileHash"] == hashlib.sha256(PDF).hexdigest()
    assert platform.received.files == {hashlib.sha256(PDF).hexdigest(): len(PDF)}
    assert platform.received.tokens_issued == 1


async def test_a_corrected_report_is_sent_again_and_the_platform_keeps_the_last(
    platform, open_journal, tmp_path
):
    journal = await open_agent(open_journal)
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E3")])
        await eventually(lambda: settled(journal, 1))
        await journal.ingest([audited("E3")])  # the same again: nothing new
        await journal.ingest([audited("E3", impression="右下肺炎（更正）")])
        await eventually(lambda: settled(journal, 2))
    assert len(platform.received.uploads) == 2
    kept = platform.received.records["uploadExamIndex"]["XC0001|E3"]
    assert kept["examConclusion"] == "右下肺炎（更正）"


async def test_an_expired_token_is_renewed_and_the_upload_goes_through(
    platform, open_journal, tmp_path
):
    journal = await open_agent(open_journal)
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path))
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E4")])
        await eventually(lambda: settled(journal, 1))
        platform.expire_tokens()  # what 7200 s do
        await journal.ingest([audited("E5")])
        rows = await eventually(lambda: settled(journal, 2))
    assert [r["state"] for r in rows] == ["delivered", "delivered"]
    assert platform.received.tokens_issued == 2
    assert [code for _, code, _ in platform.received.refused] == [401]


async def test_anything_but_http_200_is_a_failure_and_a_5xx_is_retried(
    platform, open_journal, tmp_path
):
    journal = await open_agent(open_journal)
    uplink = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path))
    platform.faults.error_next = 1  # {code: 500} answered: busy, retried
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E6")])
        (row,) = await eventually(lambda: settled(journal, 1))
        assert row["state"] == "delivered" and row["attempts"] == 2
        await uplink.tokens.get()  # the token is in hand: the next request is the upload
        platform.faults.fail_next, platform.faults.fail_status = 1, 202
        await journal.ingest([audited("E7")])
        rows = await eventually(lambda: settled(journal, 2))
    dead = rows[-1]
    assert dead["state"] == "dead"
    assert dead["last_error"] == "HTTP 202: anything but 200 is a failure (seed 001)"


async def test_when_the_sub_platform_is_unreachable_the_fallback_takes_the_upload(
    platform, open_journal, tmp_path
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
    journal = await open_agent(open_journal)
    config = sharing(closed, tmp_path, fallback_urls=[platform.base_url])
    uplink = ResultsSharingUplink("sharing", config)
    async with run_dispatcher(journal, uplink, FAST):
        await journal.ingest([audited("E8")])
        (row,) = await eventually(lambda: settled(journal, 1))
    assert row["state"] == "delivered" and row["attempts"] == 1
    assert [body["examNo"] for _, body in platform.received.uploads] == ["E8"]


def changed_mapping(tmp_path: Path) -> Path:
    """Ours with a field renamed, a new required field and a different dictionary."""
    folder = tmp_path / "mapping"
    shutil.copytree(DEFAULT_DIR, folder)
    fields = folder / "fields.toml"
    text = fields.read_text("utf-8")
    text = text.replace('{ name = "patientName"', '{ name = "patName"')
    text = text.replace('{ target = "patientName"', '{ target = "patName"')
    text = text.replace(
        'choices = ["0", "1", "2", "9"], description = "GB/T 2261.1"',
        'choices = ["M", "F", "U"]',
    )
    text = text.replace(
        'translate = { male = "1", female = "2", other = "9", unknown = "0" }',
        'translate = { male = "M", female = "F", other = "U", unknown = "U" }',
    )
    text = text.replace(
        '  { name = "orgName", type = "VC(64)", description = "机构名称" },\n',
        '  { name = "orgName", type = "VC(64)", description = "机构名称" },\n'
        '  { name = "orgLevel", type = "VC(2)", required = true },\n',
        1,
    )
    text = text.replace(
        '  { target = "orgName", source = "org.name" },\n',
        '  { target = "orgName", source = "org.name" },\n'
        '  { target = "orgLevel", constant = "3A" },\n',
        1,
    )
    fields.write_text(text, "utf-8")
    return folder


async def test_a_changed_mapping_file_changes_what_is_sent_and_accepted(open_journal, tmp_path):
    folder = changed_mapping(tmp_path)
    platform = await start_platform(folder)
    try:
        journal = await open_agent(open_journal)
        old = ResultsSharingUplink("sharing", sharing(platform.base_url, tmp_path))
        async with run_dispatcher(journal, old, FAST):  # the agent still on our mapping
            await journal.ingest([audited("E9")])
            (row,) = await eventually(lambda: settled(journal, 1))
        assert row["state"] == "dead"
        assert "orgLevel: required field is missing" in row["last_error"]
        assert "patientName: not a field of the table" in row["last_error"]
        assert "sexCode: must be one of M, F, U" in row["last_error"]
        config = sharing(platform.base_url, tmp_path, mappings=str(folder))
        new = ResultsSharingUplink("sharing", config)
        async with run_dispatcher(journal, new, FAST):
            await journal.ingest([audited("E10")])
            await eventually(lambda: settled(journal, 2))
    finally:
        await platform.stop()
    (body,) = [b for _, b in platform.received.uploads]
    assert body["patName"] == "张三" and "patientName" not in body
    assert body["sexCode"] == "M" and body["orgLevel"] == "3A"


def test_check_config_names_the_mapping_file_the_field_and_the_reason(tmp_path):
    folder = tmp_path / "mapping"
    shutil.copytree(DEFAULT_DIR, folder)
    fields = folder / "fields.toml"
    fields.write_text(
        fields.read_text("utf-8").replace('type = "C(64)"', 'type = "hex64"'), "utf-8"
    )
    path = tmp_path / "agent.toml"
    path.write_text(
        '[uplinks.sharing]\ntype = "results_sharing"\nbase_url = "https://share.example/api"\n'
        'app_id = "a"\napp_secret = "s"\norg_code = "XC0001"\nmappings = "mapping"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, PLUGIN_KINDS)
    (line,) = raised.value.problems
    assert line.startswith(f"{path}: uplinks.sharing: mappings: {fields}: ")
    assert "tables.uploadExamReportPdf.fields[6].type: unknown type 'hex64'" in line
