"""A faithful fake of the city remote-imaging platform (seed 003 §3.2): HTTP + a storage SCP."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from Crypto.PublicKey import RSA
from pydantic import Field

from agent.config import Secret, TimeZoneName
from agent.simulators.base import Counts, DownMode, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.simulators.jiwei import add_jiwei_route
from agent.simulators.ledger import Verdict
from agent.simulators.remote_imaging_lean import LeanStorageScp
from agent.simulators.remote_imaging_scp import StorageScp, Stored
from agent.uplinks.kit.fields import LengthUnit
from agent.uplinks.remote_imaging.dictionaries import EXAM_CLASSES, MODALITIES
from agent.uplinks.remote_imaging.fields import (
    DATETIME,
    PUSH,
    STATISTICS_ITEM,
    validate,
)
from agent.uplinks.remote_imaging.sign import DEFAULT_FIELDS, Padding, SignField, decrypt, load_key

MSG_TOKEN = "token无效或已过期"  # noqa: S105 - a message, not a secret
KEY_FILE = "private-key.pem"  # in the state folder: the key pair outlives a restart
_dumps = functools.partial(json.dumps, ensure_ascii=False)


class RemoteImagingSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "remote_imaging" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8791
    path_prefix: str = "/openapi"  # the uplink's base_url is http://host:port<path_prefix>
    dicom_port: Annotated[int, Field(ge=0, le=65535)] = 11113
    ae_title: str = "CITYPACS"  # the only called AE title it accepts
    dicom_lean: bool = False  # the SCP on the event loop, not pynetdicom (benchmarks: cheap peer)
    app_id: str = "edge-agent"
    org_id: str = "0001"
    license: Secret
    private_key: Secret | None = None  # PEM; None: a new key pair at each start (see public_key)
    sign_fields: list[SignField] = list(DEFAULT_FIELDS)
    sign_separator: str = ","
    sign_padding: Padding = "pkcs1v15"
    timezone: TimeZoneName = "Asia/Shanghai"
    time_skew: Annotated[float, Field(ge=0)] = 300.0  # `time` sign field: accepted distance
    token_ttl: Annotated[float, Field(gt=0)] = 8100.0  # the seed: 2 h plus 15 min of grace
    token_header: str = "token"  # noqa: S105 - a header name
    hospital_codes: list[str] = []  # accepted hospitalCode values (empty: any)
    strict_dictionaries: bool = True  # examClass must be in WNCV5103_01 (§3.2.4.1)
    jiwei_key: Secret | None = None  # set: serve the 基卫 apply forms (§3.1) at jiwei_path
    jiwei_path: str = "/jiwei/applyInfo"
    length_unit: LengthUnit = "chars"


@dataclass
class RemoteFaults(Faults):
    """The shared switches, plus the platform's own error answers and DICOM statuses."""

    error_next: int = 0  # answer the next N requests {status: error_status, message: …}
    error_status: int = 999
    error_message: str = "其他错误"
    busy_next: int = 0  # answer the next N requests {status: 1, message: 系统繁忙，请稍后重试}
    dicom_status_next: int = 0  # answer the next N C-STOREs with dicom_status
    dicom_status: int = 0xA700  # a warning (0xB000…) still stores the instance
    dicom_delay: float = 0.0  # seconds each C-STORE waits before its answer (a round trip)
    dicom_keep: bool = True  # keep each instance's bytes (False: benchmarks count, not compare)


@dataclass
class Received(Counts):
    """What the platform accepted and refused, in arrival order."""

    pushes: list[dict[str, Any]] = field(default_factory=list)
    statistics: list[list[dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (endpoint, status, msg)
    instances: dict[str, Stored] = field(default_factory=dict)  # SOPInstanceUID -> Stored
    dicom_refused: list[tuple[str, int, str]] = field(default_factory=list)  # (sop, status, why)
    associations: int = 0


class RemoteImagingSimulator(SimulatedCloud[Received]):
    """`await start()`, point the uplink at `base_url` and `dicom_port`, inspect `received`."""

    faults: RemoteFaults

    def __init__(
        self, name: str, config: RemoteImagingSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        faults, received = RemoteFaults(), Received()
        super().__init__(name, config.host, config.port, faults, received, state_dir=state_dir)
        self.config = config
        pem = config.private_key.get_secret_value() if config.private_key else None
        self._key = load_key(pem) if pem else _key_pair(state_dir)
        scp = LeanStorageScp if config.dicom_lean else StorageScp
        self._scp = scp(config, self.faults, self.received, self.arrived)
        self._scp.record = self.record
        self.apply_forms: list[dict[str, str]] = []  # what 基卫 answers, when served

    @property
    def dicom_port(self) -> int:
        """The storage SCP's port (the free one it got, if configured as 0)."""
        return self._scp.port

    def dicom_timings(self) -> tuple[list[float], list[float]] | None:
        """(answer, turnaround) seconds the lean SCP measured since the last call (see
        `LeanStorageScp`), then forgotten; None with pynetdicom's SCP."""
        scp = self._scp
        if not isinstance(scp, LeanStorageScp):
            return None
        found = list(scp.answers), list(scp.turnarounds)
        scp.answers.clear()
        scp.turnarounds.clear()
        return found

    @property
    def base_url(self) -> str:
        """The uplink's base_url for this simulator."""
        return f"http://{self.host}:{self.port}{self.config.path_prefix}"

    @property
    def public_key(self) -> str:
        """The PEM public key the uplink encrypts its sign with."""
        return self._key.public_key().export_key().decode("ascii")

    def add_routes(self, app: web.Application) -> None:
        """getToken, exam/push and exam/uploadStatistics under path_prefix."""
        prefix = self.config.path_prefix.rstrip("/")
        app.router.add_post(f"{prefix}/v1/auth/getToken", self._token)
        app.router.add_post(f"{prefix}/v1/exam/push", self._push)
        app.router.add_post(f"{prefix}/v1/exam/uploadStatistics", self._statistics)
        if self.config.jiwei_key is not None:
            key = self.config.jiwei_key.get_secret_value()
            add_jiwei_route(app, self.config.jiwei_path, key, lambda: self.apply_forms)

    async def _listen(self) -> None:
        """Listen for HTTP and DICOM (port 0: a free port, kept across down/up)."""
        await super()._listen()
        await self._scp.start()

    async def _unlisten(self) -> None:
        """Refuse HTTP and DICOM connections."""
        await super()._unlisten()
        self._scp.stop()

    async def stop(self) -> None:
        """Stop both listeners; held answers end now."""
        self._scp.released.set()
        self._scp.stop()
        await self._scp.closed()
        await super().stop()

    async def go_down(self, mode: DownMode = "refuse") -> None:
        """Refuse connections (HTTP and DICOM), or answer HTTP 503 and C-STORE 0xA700."""
        await super().go_down(mode)
        self._scp.unavailable = mode == "unavailable"

    async def come_up(self) -> None:
        """Answer again on the same ports."""
        await super().come_up()
        self._scp.unavailable = False

    def release_held(self) -> None:
        """Answer every held request and C-STORE, and hold no more."""
        super().release_held()
        self._scp.released.set()

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """Accepted: HTTP 200 with status 0; refused: any other status, in `message`."""
        if status != 200:
            return super().judge(status, answer)
        if not isinstance(answer, dict) or "status" not in answer:
            return "failed", status, "malformed answer (no status)"
        platform_status = answer["status"]
        verdict: Verdict = "accepted" if platform_status == 0 else "refused"
        return verdict, platform_status, str(answer.get("message", ""))

    def memory(self) -> dict[str, Any]:
        """The pushed studies whose instances the SCP takes."""
        with self._scp.lock:
            return {"studies": {uid: list(pair) for uid, pair in self._scp.studies.items()}}

    def restore(self, memory: dict[str, Any]) -> None:
        """Take back `memory()` from the state folder."""
        with self._scp.lock:
            for uid, (patient, accession) in (memory.get("studies") or {}).items():
                self._scp.studies[uid] = (patient, accession)

    def forget(self) -> None:
        """Forget every pushed study."""
        with self._scp.lock:
            self._scp.studies.clear()

    # --- HTTP -------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.StreamResponse:
        try:
            sign = (await request.json())["sign"]
        except (ValueError, KeyError, TypeError):
            return _answer(1, "参数sign不能为空")
        text = decrypt(self._key, sign, self.config.sign_padding) if isinstance(sign, str) else None
        if text is None or not self._sign_matches(text.split(self.config.sign_separator)):
            return _answer(1, "sign无效：appId、orgId或license错误")
        token = self.issue_token(self.config.token_ttl)
        return _answer(0, "操作成功", {"token": token})

    def _sign_matches(self, parts: list[str]) -> bool:
        config = self.config
        values = {"appId": config.app_id, "orgId": config.org_id}
        values["license"] = config.license.get_secret_value()
        if len(parts) != len(config.sign_fields):
            return False
        for name, part in zip(config.sign_fields, parts, strict=True):
            if name == "time":
                try:
                    stamp = datetime.strptime(part, DATETIME).replace(
                        tzinfo=ZoneInfo(config.timezone)
                    )
                except ValueError:
                    return False
                if abs(stamp.timestamp() - time.time()) > config.time_skew:
                    return False
            elif values[name] != part:
                return False
        return True

    async def _push(self, request: web.Request) -> web.StreamResponse:
        return await self._upload(request, "push", self._check_push)

    async def _statistics(self, request: web.Request) -> web.StreamResponse:
        return await self._upload(request, "uploadStatistics", self._check_statistics)

    async def _upload(
        self, request: web.Request, endpoint: str, check: Callable[[Any], list[str]]
    ) -> web.StreamResponse:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if not self.token_valid(request.headers.get(self.config.token_header)):
            return await self._refuse(endpoint, 1, MSG_TOKEN)
        if self.faults.error_next > 0:
            self.faults.error_next -= 1
            faults = self.faults
            return await self._refuse(endpoint, faults.error_status, faults.error_message)
        if self.faults.busy_next > 0:
            self.faults.busy_next -= 1
            return await self._refuse(endpoint, 1, "系统繁忙，请稍后重试")
        try:
            body = await request.json()
        except ValueError:
            return await self._refuse(endpoint, 1, "参数格式错误：不是JSON")
        problems = check(body)
        if problems:
            return await self._refuse(endpoint, 1, "参数校验失败：" + "；".join(problems))
        async with self.arrived:
            with self._scp.lock:
                if endpoint == "push":
                    for image in body.get("imageList") or []:
                        pair = (image["patientID"], image.get("accessionNo") or "")
                        self._scp.studies[image["studyUID"]] = pair
                    self.received.pushes.append(body)
                else:
                    self.received.statistics.append(body)
            self.arrived.notify_all()
        if endpoint == "push":
            self.save()
        return _answer(0, "操作成功")

    def _check_push(self, body: Any) -> list[str]:
        problems = validate(PUSH, body, self.config.length_unit)
        if problems:
            return problems
        codes = self.config.hospital_codes
        if codes and body["hospitalCode"] not in codes:
            problems.append("hospitalCode: unknown hospital")
        for index, image in enumerate(body.get("imageList") or []):
            if image["patientID"] != body["examInfo"]["patientID"]:
                problems.append(f"imageList[{index}].patientID: differs from examInfo.patientID")
            if image.get("modality") not in (None, *MODALITIES):
                problems.append(f"imageList[{index}].modality: not DX/CT/MR/XA/NM/US/ES/GM")
        if self.config.strict_dictionaries and body["examInfo"]["examClass"] not in EXAM_CLASSES:
            problems.append("examInfo.examClass: not in WNCV5103_01")
        return problems

    def _check_statistics(self, body: Any) -> list[str]:
        if not isinstance(body, list) or not body:
            return ["body: not a non-empty JSON array"]
        problems: list[str] = []
        for index, item in enumerate(body):
            problems += validate(STATISTICS_ITEM, item, self.config.length_unit, f"[{index}].")
            if self.config.strict_dictionaries and item.get("examClass") not in EXAM_CLASSES:
                problems.append(f"[{index}].examClass: not in WNCV5103_01")
        return problems

    async def _refuse(self, endpoint: str, status: int, message: str) -> web.Response:
        async with self.arrived:
            self.received.refused.append((endpoint, status, message))
            self.arrived.notify_all()
        return _answer(status, message)


def _answer(status: int, message: str, result: object = None) -> web.Response:
    body: dict[str, object] = {"status": status, "message": message}
    if result is not None:
        body["result"] = result
    return web.json_response(body, dumps=_dumps)


def _key_pair(state_dir: Path | None) -> RSA.RsaKey:
    """The key kept in the state folder (made there, mode 0600, the first time), else a new one."""
    path = state_dir / KEY_FILE if state_dir is not None else None
    if path is not None and path.exists():
        return load_key(path.read_text(encoding="ascii"))
    key = RSA.generate(1024)  # noqa: S505 - the sign it decrypts is ≤ VC(256)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fp:
            fp.write(key.export_key())
    return key


def build(
    name: str, config: RemoteImagingSimulatorConfig, state_dir: Path | None = None
) -> RemoteImagingSimulator:
    """Make the simulator from its validated config."""
    return attach(RemoteImagingSimulator(name, config, state_dir), config)


async def serve(
    host: str = "127.0.0.1",
    port: int = 8791,
    *,
    dicom_port: int = 11113,
    license: str = "simulator-license",  # the demo's well-known value
    private_key: str | None = None,
    ready: Callable[[RemoteImagingSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate remote-imaging`)."""
    settings: dict[str, Any] = {"type": "remote_imaging", "host": host, "port": port}
    settings |= {"dicom_port": dicom_port, "license": license}
    if private_key is not None:
        settings["private_key"] = private_key
    simulator = RemoteImagingSimulator(
        "remote_imaging", RemoteImagingSimulatorConfig.model_validate(settings), state_dir
    )
    await run_until_cancelled(simulator, control, ready, control_ready)
