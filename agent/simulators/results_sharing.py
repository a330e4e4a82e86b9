"""The results-sharing platform (seed 001) as a simulator, driven by the same mapping set as the
uplink: a token that expires, one route per [endpoints] entry validating each upload against
its table (a clear refusal naming the fields), and a ledger of the records it keeps."""

from __future__ import annotations

import email.policy
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated, Any

import aiohttp
from aiohttp import web
from pydantic import Field

from agent.config import ConfigPath
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.simulators.ledger import Verdict
from agent.uplinks.kit.fields import validate
from agent.uplinks.results_sharing.mapping import (
    DEFAULT_DIR,
    Endpoint,
    MappingSet,
    Query,
    load_mapping_set,
)

OK, TOKEN_INVALID, INVALID = 200, 401, 412
MSG_TOKEN = "token无效或已过期"  # noqa: S105 - a message, not a secret


class ResultsSharingSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "results_sharing" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8793
    path_prefix: str = "/api"  # the uplink's base_url is http://host:port<path_prefix>
    app_id: str = "edge-agent"
    app_secret: str = "simulator-secret"  # noqa: S105 - the demo's well-known value
    mappings: ConfigPath | None = None  # the folder the uplink uses (default: ours)
    token_ttl: Annotated[float, Field(gt=0)] = 7200.0  # the seed's 7200 s (shorter for tests)
    # What the platform itself publishes (公共6, 公共7), by the names queries `search`; the
    # field names are those of our default mapping (assumed, as it is).
    reference: dict[str, list[dict[str, str]]] = {
        "standard_items": [
            {"itemType": "01", "itemCode": "JC0101", "itemName": "胸部CT平扫"},
            {"itemType": "01", "itemCode": "JC0201", "itemName": "上腹部彩超"},
            {"itemType": "02", "itemCode": "JY0001", "itemName": "血常规"},
            {"itemType": "02", "itemCode": "JY0102", "itemName": "肝功能"},
        ],
        "institutions": [
            {"regionCode": "341802", "orgCode": "XC0001", "orgName": "宣城市某某医院"},
            {"regionCode": "341802", "orgCode": "XC0002", "orgName": "宣城市人民医院"},
            {"regionCode": "341821", "orgCode": "XC0101", "orgName": "郎溪县人民医院"},
        ],
    }


@dataclass
class SharingFaults(Faults):
    """The shared switches, plus the platform's own error answers."""

    error_next: int = 0  # answer the next N uploads {code: error_code, msg: error_message}
    error_code: int = 500
    error_message: str = "系统繁忙"
    lose_next: int = 0  # accept the next N uploads (code 200) and keep nothing of them


@dataclass
class Received(Counts):
    """What the platform kept (per endpoint, the last upload of each record key) and refused."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    uploads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # accepted, in order
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (endpoint, code, msg)
    files: dict[str, int] = field(default_factory=dict)  # SHA-256 of each file -> its size
    lost: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # accepted, not kept
    checks: list[dict[str, Any]] = field(default_factory=list)  # completeness queries answered
    key_checks: list[tuple[str, str]] = field(default_factory=list)  # (viewer|download, study)


class ResultsSharingSimulator(SimulatedCloud[Received]):
    """`await start()`, point the uplink at `base_url`, inspect `received`."""

    faults: SharingFaults

    def __init__(
        self, name: str, config: ResultsSharingSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        super().__init__(
            name, config.host, config.port, SharingFaults(), Received(), state_dir=state_dir
        )
        self.config = config
        self.mapping: MappingSet = load_mapping_set(config.mappings or DEFAULT_DIR)
        self._keys: dict[str, tuple[str, str, float]] = {}  # key -> (kind, study, expiry)
        self._pdfs: dict[str, bytes] = {}  # SHA-256 -> the PDFs uploaded (memory only)

    @property
    def base_url(self) -> str:
        """The uplink's base_url for this simulator."""
        return f"http://{self.host}:{self.port}{self.config.path_prefix}"

    def add_routes(self, app: web.Application) -> None:
        """The token route and one route per endpoint of the mapping set."""
        prefix = self.config.path_prefix.rstrip("/")
        app.router.add_post(f"{prefix}/{self.mapping.platform.token.path}", self._token)
        app.router.add_get(f"{prefix}/files/{{sha256:[0-9a-f]{{64}}}}", self._file)
        for name, endpoint in self.mapping.platform.endpoints.items():
            handler = self._handler(name, endpoint)
            app.router.add_post(f"{prefix}/{endpoint.path.lstrip('/')}", handler)

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """{code, msg}: success accepted, busy failed, anything else refused."""
        shape = self.mapping.platform.answer
        if status == 200 and isinstance(answer, dict) and shape.code in answer:
            code = int(answer[shape.code])
            message = str(answer.get(shape.message) or "")
            if code in shape.success:
                return "accepted", code, ""
            return ("failed" if code in shape.busy else "refused"), code, message
        return super().judge(status, answer)

    def memory(self) -> dict[str, Any]:
        """The records kept, per endpoint and key."""
        return {"records": self.received.records}

    def restore(self, memory: dict[str, Any]) -> None:
        """Take back `memory()` after a restart."""
        self.received.records = dict(memory.get("records") or {})

    async def _token(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.json()
        except ValueError:
            body = None
        spec = self.mapping.platform.token
        wanted = {"{app_id}": self.config.app_id, "{app_secret}": self.config.app_secret}
        expected = {k: wanted.get(v, v) for k, v in spec.body.items()}
        if not isinstance(body, dict) or any(body.get(k) != v for k, v in expected.items()):
            return self._answer(INVALID, "认证失败：appId或appSecret错误")
        token = self.issue_token(self.config.token_ttl)
        data: dict[str, Any] = {}
        _put(data, spec.token, token)
        _put(data, spec.expires_in, int(self.config.token_ttl))
        return web.json_response(
            {
                **data,
                self.mapping.platform.answer.code: OK,
                self.mapping.platform.answer.message: "成功",
            }
        )

    def _handler(self, name: str, endpoint: Endpoint) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            return await self._upload(request, name, endpoint)

        return handle

    async def _upload(self, request: web.Request, name: str, endpoint: Endpoint) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        auth = self.mapping.platform.auth
        given = request.headers.get(auth.header, "")
        if not given.startswith(auth.prefix) or not self.token_valid(given[len(auth.prefix) :]):
            return await self._refuse(name, TOKEN_INVALID, MSG_TOKEN)
        if self.faults.error_next > 0:
            self.faults.error_next -= 1
            return await self._refuse(name, self.faults.error_code, self.faults.error_message)
        table = self.mapping.tables[name]
        file: bytes | None = None
        if endpoint.body == "multipart":
            body, file, problems = await _multipart(request, endpoint, table)
        else:
            body, problems = await _json(request)
        if not problems:
            problems = validate(table, body, self.mapping.checks)
        if not problems and endpoint.body == "multipart" and not (file or b"").startswith(b"%PDF-"):
            problems = [f"{endpoint.file_part}: not a PDF file"]
        if problems:
            return await self._refuse(name, INVALID, "参数校验失败：" + "；".join(problems))
        if self._is_check(name):
            return await self._check(body)
        kind = self._key_kind(name)
        if kind is not None:
            return await self._verify_key(name, kind, body)
        query = next(
            (q for q in self.mapping.platform.queries.values()
             if self.mapping.maps[q.map].endpoint == name),
            None,
        )  # fmt: skip
        if query is not None:
            return self._query(query, body)
        key = "|".join(str(body.get(k, "")) for k in endpoint.key) or str(
            len(self.received.uploads)
        )
        if self.faults.lose_next > 0:
            self.faults.lose_next -= 1
            async with self.arrived:
                self.received.lost.append((name, body))
                self.arrived.notify_all()
            return self._answer(OK, "成功")
        async with self.arrived:
            self.received.records.setdefault(name, {})[key] = body
            self.received.uploads.append((name, body))
            if file is not None:
                self.received.files[hashlib.sha256(file).hexdigest()] = len(file)
                self._pdfs[hashlib.sha256(file).hexdigest()] = file
            self.arrived.notify_all()
        self.save()
        return self._answer(OK, "成功")

    def issue_key(self, kind: str, study_uid: str, ttl: float = 600.0) -> str:
        """A viewerKey (kind "viewer") or downloadKey ("download") for one study, as 检查7/9
        would hand another hospital; valid `ttl` seconds."""
        key = secrets.token_urlsafe(24)
        self._keys[key] = (kind, study_uid, time.time() + ttl)
        return key

    def _key_kind(self, name: str) -> str | None:
        keys = self.mapping.platform.keys
        if keys is None:
            return None
        for kind, map_name in (("viewer", keys.viewer_map), ("download", keys.download_map)):
            if self.mapping.maps[map_name].endpoint == name:
                return kind
        return None

    async def _verify_key(self, name: str, kind: str, body: dict[str, Any]) -> web.Response:
        """检查8/11: whether the key was issued for this study, and is still valid."""
        keys = self.mapping.platform.keys
        assert keys is not None
        rules = self.mapping.maps[keys.viewer_map if kind == "viewer" else keys.download_map]
        field_of = {r.source: r.target for r in rules.fields if r.source}
        given = str(body.get(field_of.get("key", ""), ""))
        study = str(body.get(field_of.get("study_uid", ""), ""))
        issued = self._keys.get(given)
        async with self.arrived:
            self.received.key_checks.append((kind, study))
            self.arrived.notify_all()
        if issued is None or issued[0] != kind:
            return await self._refuse(name, 403, f"{kind}Key无效")
        if issued[2] < time.time():
            return await self._refuse(name, 403, f"{kind}Key已过期")
        if issued[1] != study:
            return await self._refuse(name, 403, f"{kind}Key不属于该检查")
        shape = self.mapping.platform.answer
        answer: dict[str, Any] = {shape.code: OK, shape.message: "成功"}
        _put(answer, keys.valid, True)
        return web.json_response(answer)

    async def download_study(self, gate_url: str, study_uid: str) -> dict[str, bytes]:
        """Play another hospital: a downloadKey (检查9), the UID query (检查10), then every
        instance by WADO-URI (检查12) as application/dicom; SOP Instance UID -> bytes."""
        key = self.issue_key("download", study_uid)
        found: dict[str, bytes] = {}
        async with aiohttp.ClientSession() as client:
            params = {"studyUID": study_uid, "downloadKey": key}
            async with client.get(f"{gate_url}/uids", params=params) as answer:
                answer.raise_for_status()
                listing = await answer.json()
            for series in listing["series"]:
                for instance in series["instances"]:
                    wado = {
                        "requestType": "WADO",
                        "studyUID": study_uid,
                        "seriesUID": series["seriesUID"],
                        "objectUID": instance["objectUID"],
                        "contentType": "application/dicom",
                        "downloadKey": key,
                    }
                    async with client.get(f"{gate_url}/wado", params=wado) as answer:
                        answer.raise_for_status()
                        found[instance["objectUID"]] = await answer.read()
        return found

    def _query(self, query: Query, body: dict[str, Any]) -> web.Response:
        """A doctor station's query: a new key, or the records held that match."""
        shape = self.mapping.platform.answer
        data: Any
        if query.issues:
            study_field = next(
                (r.target for r in self.mapping.maps[query.map].fields if r.source == "study_uid"),
                "",
            )
            key = self.issue_key(query.issues, str(body.get(study_field, "")))
            data = {f"{query.issues}Key": key}
        else:
            records = self.received.records.get(query.searches)
            held = records.values() if records else self.config.reference.get(query.searches, [])
            data = [r for r in held if all(r.get(f) == body.get(f) for f in query.by)]
            if query.pdf:  # where each record's PDF is fetched (with a token), when held
                data = [{**r, query.pdf: self._file_url(r)} if self._file_url(r) else r
                        for r in data]  # fmt: skip
        answer = {shape.code: OK, shape.message: "成功", shape.data: data}
        return web.json_response(answer, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _file_url(self, record: dict[str, Any]) -> str:
        sha = next((v for v in record.values() if isinstance(v, str) and v in self._pdfs), "")
        return f"{self.base_url}/files/{sha}" if sha else ""

    async def _file(self, request: web.Request) -> web.Response:
        """A PDF uploaded here (检查5/检验8 downloads), with a valid token."""
        auth = self.mapping.platform.auth
        given = request.headers.get(auth.header, "")
        if not given.startswith(auth.prefix) or not self.token_valid(given[len(auth.prefix) :]):
            return web.Response(status=401, text=MSG_TOKEN)
        pdf = self._pdfs.get(request.match_info["sha256"])
        if pdf is None:
            return web.Response(status=404, text="无此文件")
        return web.Response(body=pdf, content_type="application/pdf")

    def _is_check(self, name: str) -> bool:
        daily = self.mapping.platform.daily
        return daily is not None and self.mapping.maps[daily.check_map].endpoint == name

    async def _check(self, body: dict[str, Any]) -> web.Response:
        """The completeness query: which of the listed records this platform does not hold."""
        daily = self.mapping.platform.daily
        assert daily is not None
        listed = next((v for v in body.values() if isinstance(v, list)), [])
        missing = [
            {"interface": r.get("interface"), "key": r.get("key")}
            for r in listed
            if isinstance(r, dict)
            and str(r.get("key")) not in self.received.records.get(str(r.get("interface")), {})
        ]
        async with self.arrived:
            self.received.checks.append({"asked": len(listed), "missing": missing})
            self.arrived.notify_all()
        shape = self.mapping.platform.answer
        answer: dict[str, Any] = {shape.code: OK, shape.message: "成功"}
        _put(answer, daily.missing, missing)
        return web.json_response(answer, dumps=lambda v: json.dumps(v, ensure_ascii=False))

    async def _refuse(self, name: str, code: int, message: str) -> web.Response:
        async with self.arrived:
            self.received.refused.append((name, code, message))
            self.arrived.notify_all()
        return self._answer(code, message)

    def _answer(self, code: int, message: str) -> web.Response:
        shape = self.mapping.platform.answer
        body = {shape.code: code, shape.message: message, shape.data: None}
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))


async def _json(request: web.Request) -> tuple[dict[str, Any], list[str]]:
    try:
        body = await request.json()
    except ValueError:
        return {}, ["body: not JSON"]
    return (body, []) if isinstance(body, dict) else ({}, ["body: not a JSON object"])


async def _multipart(
    request: web.Request, endpoint: Endpoint, table: dict[str, Any]
) -> tuple[dict[str, Any], bytes | None, list[str]]:
    if request.content_type != "multipart/form-data":
        return {}, None, ["body: not multipart/form-data"]
    body: dict[str, Any] = {}
    file: bytes | None = None
    # Read from the bytes the ledger already read (the stream is spent), as a MIME message.
    head = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + await request.read())
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            continue
        if name == endpoint.file_part and part.get_filename():
            file = data
            continue
        value = data.decode("utf-8", errors="replace")
        spec = table.get(name)
        if spec is not None and spec.kind in ("object", "array"):
            try:
                body[name] = json.loads(value)
                continue
            except ValueError:
                pass
        body[name] = value
    if file is None:
        return body, None, [f"{endpoint.file_part}: the file part is missing"]
    return body, file, []


def _put(into: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for parent in parents:
        into = into.setdefault(parent, {})
    into[last] = value


def build(
    name: str, config: ResultsSharingSimulatorConfig, state_dir: Path | None = None
) -> ResultsSharingSimulator:
    """Make the simulator from its validated config."""
    return attach(ResultsSharingSimulator(name, config, state_dir), config)


async def serve(
    config: ResultsSharingSimulatorConfig,
    *,
    ready: Callable[[ResultsSharingSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate results-sharing`)."""
    simulator = ResultsSharingSimulator("results_sharing", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
