"""The demo's hospital: a CT that C-STOREs a study, RIS that posts its report, a washer's receipts.

Once the agent's API answers, it plays (times divided by `speed`):

* after `study_after` seconds, a small generated CT study (two series, five 64×64 images) sent by
  C-STORE to the agent's SCP, then the exam with its final report posted to /api/v1/exams; again
  every `repeat_every` seconds with a new accession and new UIDs (0 = once);
* each time `washer_scope` enters its machine-wash step (GET /api/v1/scopes), a washer programme
  of about 18 s (clean, rinse, OPA disinfection, final rinse, dry), then that programme's receipt
  (thermal_cn, GB18030) written into `washer_folder`: a tmp file renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from pydantic import Field
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context

from agent.config import ConfigPath, PluginSection, Secret, TimeZoneName
from agent.dicom_wakeups import use_wakeups
from agent.errors import AgentError

log = structlog.get_logger(__name__)

# The washer programme: (printed phase name, seconds at speed 1, temperature printed).
PROGRAMME = (
    ("初洗", 3, "24.5℃"),
    ("漂洗", 2, "24.8℃"),
    ("消毒", 8, "22.6℃"),  # OPA: longer than the demo's scaled minimum (6 s)
    ("终末漂洗", 2, "24.9℃"),
    ("吹干", 3, "--"),
)
SIDE = 64  # image rows and columns
SERIES = (("胸部平扫", 3), ("胸部增强", 2))  # (description, images)
POLL = 0.5  # seconds between looks at the API


class DemoTrafficConfig(PluginSection):
    """[simulators.<name>] type = "demo_traffic" """

    api_url: str = "http://127.0.0.1:8770"  # the agent's local API
    api_token: Secret
    scp_host: str = "127.0.0.1"
    scp_port: Annotated[int, Field(ge=1, le=65535)] = 11112
    scp_ae_title: str = "EDGE_AGENT"  # the agent's SCP (called AE title)
    calling_ae_title: str = "DEMO_CT"  # the simulated CT (must be in allowed_calling_aes)
    study_after: Annotated[float, Field(ge=0)] = 5.0  # seconds after the API answers
    repeat_every: Annotated[float, Field(ge=0)] = 300.0  # a new study this often (0 = once)
    patient_id: str = "DEMO-P0001"
    accession: Annotated[str, Field(min_length=1, max_length=12)] = "DEMO0001"  # +1 per repeat
    washer_folder: ConfigPath | None = None  # where the washer writes receipts (None: no washer)
    washer_id: str = "AER-01"  # the machine id printed on its receipts
    washer_scope: str = ""  # the scope number whose machine-wash steps get a receipt
    operator: str = "王护士"  # printed on the receipts
    timezone: TimeZoneName = "Asia/Shanghai"  # receipts and exams print local times
    speed: Annotated[float, Field(gt=0)] = 1.0  # divide every wait by this (tests run faster)


class DemoTraffic:
    """The simulator: `start()` begins playing once the API answers; `stop()` ends it."""

    def __init__(self, name: str, config: DemoTrafficConfig) -> None:
        self.name = name
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.studies = 0  # studies sent (C-STORE and exam)
        self.receipts = 0  # washer receipts written
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start playing in the background (the agent's API starts after the simulators)."""
        self._tasks = [asyncio.create_task(self._play(), name=f"{self.name}-play")]

    async def stop(self) -> None:
        """Stop playing; a C-STORE in progress finishes in its thread."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _seconds(self, seconds: float) -> float:
        return seconds / self.config.speed

    async def _play(self) -> None:
        headers = {"Authorization": f"Bearer {self.config.api_token.get_secret_value()}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            await self._api_up(http)
            jobs = [self._imaging(http)]
            if self.config.washer_folder is not None and self.config.washer_scope:
                jobs.append(self._washer(http))
            await asyncio.gather(*jobs)

    async def _api_up(self, http: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{self.config.api_url}/healthz"):
                    return  # 200 or 503: the API answers
            await asyncio.sleep(POLL)

    # --- imaging ------------------------------------------------------------------------------

    async def _imaging(self, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(self._seconds(self.config.study_after))
        while True:
            try:
                await self._send_study(http)
            except (AgentError, aiohttp.ClientError, TimeoutError, OSError) as err:
                log.warning("demo.study_failed", simulator=self.name, error=str(err))
            if not self.config.repeat_every:
                return
            await asyncio.sleep(self._seconds(self.config.repeat_every))

    async def _send_study(self, http: aiohttp.ClientSession) -> None:
        accession = _nth_accession(self.config.accession, self.studies)
        now = datetime.now(self.zone)
        datasets = list(study(self.config.patient_id, accession, now))
        await asyncio.to_thread(self._c_store, datasets)
        body = exam(self.config.patient_id, accession, now, datasets[0].StudyInstanceUID)
        async with http.post(f"{self.config.api_url}/api/v1/exams", json=body) as response:
            if response.status != 201:
                raise AgentError(f"POST /api/v1/exams: HTTP {response.status}")
        self.studies += 1
        log.info("demo.study_sent", simulator=self.name, images=len(datasets))

    def _c_store(self, datasets: list[Dataset]) -> None:
        """Blocking: one association, every dataset; AgentError on any failure."""
        config = self.config
        use_wakeups()  # with reactor_pause: our C-STORE's response comes back to this thread
        ae = AE(ae_title=config.calling_ae_title)
        context = build_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(
            config.scp_host, config.scp_port, contexts=[context], ae_title=config.scp_ae_title
        )
        if not assoc.is_established:
            raise AgentError(f"no association with {config.scp_host}:{config.scp_port}")
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                code = status.get("Status") if status else None
                if code != 0:
                    raise AgentError(f"C-STORE answered {code}")
        finally:
            assoc.release()

    # --- the washer ---------------------------------------------------------------------------

    async def _washer(self, http: aiohttp.ClientSession) -> None:
        done: set[str] = set()
        while True:
            await asyncio.sleep(POLL)
            try:
                clean_id = await self._in_machine_wash(http)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue  # the API is busy or restarting: look again
            if clean_id is None or clean_id in done:
                continue
            done.add(clean_id)
            await self._run_programme()

    async def _in_machine_wash(self, http: aiohttp.ClientSession) -> str | None:
        """The scope's cycle id while its current step is the machine wash, else None."""
        async with http.get(f"{self.config.api_url}/api/v1/scopes") as response:
            scopes: list[dict[str, Any]] = (await response.json())["scopes"]
        for scope in scopes:
            if scope["number"] == self.config.washer_scope and scope["step"] == "machine_wash":
                return str(scope["clean_id"])
        return None

    async def _run_programme(self) -> None:
        """Wait for the programme to run, then write its receipt (phases just past)."""
        durations = programme_seconds(self.config.speed)
        start = math.ceil(time.time())
        await asyncio.sleep(start + sum(durations) - time.time())
        folder = self.config.washer_folder
        assert folder is not None
        text = receipt(
            washer=self.config.washer_id,
            scope=self.config.washer_scope,
            operator=self.config.operator,
            cycle=f"{start % 1_000_000:06d}",
            start=datetime.fromtimestamp(start, self.zone),
            durations=durations,
        )
        await asyncio.to_thread(
            write_atomically, folder, f"{self.config.washer_id}-{start}.txt", text
        )
        self.receipts += 1
        log.info("demo.washer_receipt", simulator=self.name, washer=self.config.washer_id)


def programme_seconds(speed: float) -> list[int]:
    """Each phase's whole seconds at `speed` (receipts print seconds; at least one each)."""
    return [max(1, round(seconds / speed)) for _, seconds, _ in PROGRAMME]


def _nth_accession(first: str, n: int) -> str:
    """The n-th accession after `first` (its trailing number counted up)."""
    stem = first.rstrip("0123456789")
    digits = first[len(stem) :] or "0"
    return f"{stem}{int(digits) + n:0{len(digits)}d}"


def study(patient_id: str, accession: str, when: datetime) -> Iterator[Dataset]:
    """A small CT study: SERIES of SIDE×SIDE 16-bit images, new UIDs each time."""
    study_uid = generate_uid()
    for series_number, (description, images) in enumerate(SERIES, start=1):
        series_uid = generate_uid()
        for number in range(1, images + 1):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.StudyDate = when.strftime("%Y%m%d")
            ds.StudyTime = when.strftime("%H%M%S")
            ds.AccessionNumber = accession
            ds.Modality = "CT"
            ds.Manufacturer = "edge-agent demo"
            ds.ReferringPhysicianName = "Wang^Doctor"
            ds.StudyDescription = "胸部CT"
            ds.SeriesDescription = description
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.PatientName = "Zhang^San"
            ds.PatientID = patient_id
            ds.PatientBirthDate = "19800101"
            ds.PatientSex = "M"
            ds.BodyPartExamined = "CHEST"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = series_number
            ds.InstanceNumber = number
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ds.Columns = SIDE
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.PixelData = _pixels(series_number * 10 + number)
            yield ds


def _pixels(seed: int) -> bytes:
    """Concentric rings (a phantom-like picture), little-endian 12-bit values."""
    middle = SIDE / 2
    out = bytearray()
    for y in range(SIDE):
        for x in range(SIDE):
            radius = math.hypot(x - middle, y - middle)
            value = 0 if radius > middle - 2 else int(2048 + 1500 * math.cos(radius / 3 + seed))
            out += value.to_bytes(2, "little")
    return bytes(out)


def exam(patient_id: str, accession: str, when: datetime, study_uid: str) -> dict[str, Any]:
    """The RIS's exam with a final report, as POST /api/v1/exams takes it (docs/imaging.md)."""
    stamp = "%Y-%m-%d %H:%M:%S"
    return {
        "examNo": f"E{accession}",
        "studyUID": study_uid,
        "accessionNo": accession,
        "patientInfo": {"sickId": patient_id, "name": "张三", "sex": "男", "age": "46岁"},
        "examInfo": {
            "applyNo": f"A{accession}",
            "examStatus": "70",
            "examTime": when.strftime(stamp),
            "examClass": "CT",
            "examSubClass": "胸部",
            "examItemList": [{"itemName": "胸部CT平扫+增强"}],
            "examOrganList": [{"organName": "胸部"}],
            "device": "64排CT",
            "performDeptName": "放射科",
        },
        "reportList": {
            "description": "双肺纹理清晰，未见明显实质性病变。",
            "impression": "胸部CT未见明显异常。",
            "abNormalFlag": "0",
            "reporter": "赵医生",
            "reportTime": (when + timedelta(minutes=20)).strftime(stamp),
        },
    }


def receipt(
    *,
    washer: str,
    scope: str,
    operator: str,
    cycle: str,
    start: datetime,
    durations: list[int],
) -> str:
    """A thermal_cn receipt (the OER-AW layout) of PROGRAMME run from `start`."""
    rows = []
    at = start
    for (name, _, temperature), seconds in zip(PROGRAMME, durations, strict=True):
        end = at + timedelta(seconds=seconds)
        rows.append(f"{name:<8}{at:%H:%M:%S} {end:%H:%M:%S}  {temperature:>6}")
        at = end
    rule = "-" * 32
    return "\n".join(
        [
            "      内镜清洗消毒机 运行记录",
            rule,
            f"机器号: {washer}",
            "程序: 标准程序1",
            f"循环次数: {cycle}",
            f"日期: {start:%Y-%m-%d}",
            f"开始时间: {start:%H:%M:%S}",
            f"结束时间: {at:%H:%M:%S}",
            f"操作员: {operator}",
            f"内镜编号: {scope}",
            rule,
            "工序      开始      结束     温度",
            *rows,
            rule,
            "消毒剂: 邻苯二甲醛   浓度: 0.55%",
            "测漏结果: 通过",
            "活检管道: 通畅",
            "送气送水管道: 通畅",
            "吸引管道: 通畅",
            "报警代码: 无",
            "结果: 合格",
            rule,
            "签名:____________",
            "",
        ]
    )


def write_atomically(folder: Path, name: str, text: str) -> Path:
    """Write `text` (GB18030) as folder/name: a .tmp file the folder source ignores, renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_name(f"{name}.tmp")
    with tmp.open("wb") as file:
        file.write(text.encode("gb18030"))
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)
    return path


def build(name: str, config: DemoTrafficConfig) -> DemoTraffic:
    """Make the simulator from its validated config."""
    return DemoTraffic(name, config)
