"""A faithful fake of the Zhejiang endoscope platform (seed 000), with fault switches."""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, SecretStr

from agent.config import Secret
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.simulators.ledger import Verdict
from agent.uplinks.zhejiang_endoscope.fields import (
    DEFAULT_TIME_FORMAT,
    ENDPOINTS,
    lists,
    validate,
)
from agent.uplinks.zhejiang_endoscope.sign import DEFAULT_SCHEME, SCHEMES, SchemeName

CODE_OK = 200
CODE_INVALID = 400  # a field breaks the table
CODE_TOKEN = 401  # token missing, unknown or expired
CODE_SIGN = 403  # bad sign or credentials
CODE_NOT_CLEANED = 404  # uploadUseStepData: 该内镜未清洗
CODE_BUSY = 503
MSG_EXPIRED = "token无效或已过期"
_dumps = functools.partial(json.dumps, ensure_ascii=False)  # the platform answers in UTF-8
_TIMESTAMP = re.compile(r"^\d{13}$")


class ZhejiangEndoscopeSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "zhejiang_endoscope" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8790
    path_prefix: str = "/openapi"  # the uplink's base_url is http://host:port<path_prefix>
    access_key: str = "edge-agent"
    access_secret: Secret = SecretStr("simulator-secret")
    token_ttl: Annotated[float, Field(gt=0)] = 7200.0
    sign_scheme: SchemeName = DEFAULT_SCHEME
    time_format: str = DEFAULT_TIME_FORMAT  # the seed's DT fields
    date_format: str = DEFAULT_TIME_FORMAT  # the seed's `date` fields
    fail_every: Annotated[int, Field(ge=0)] = 0  # every Nth upload answers HTTP 503 (0 = never)
    outage_after: Annotated[float, Field(ge=0)] = 0.0  # seconds after start: uploads answer 503
    outage_for: Annotated[float, Field(ge=0)] = 0.0  # ... for this long, then recover (0 = none)
    # Uploads answered as the seed's 返回DEMO shows (xml: <JsonResult>); the token always in JSON.
    answer_format: Literal["json", "xml"] = "json"


@dataclass
class ZhejiangFaults(Faults):
    """The shared switches, plus the platform's own "busy" and error answers."""

    busy_next: int = 0  # answer the next N uploads HTTP 200 {code: 503, msg: 系统繁忙}
    error_next: int = 0  # answer the next N uploads HTTP 200 {code: error_code, msg: error_msg}
    error_code: int = CODE_INVALID
    error_msg: str = "参数校验失败：模拟错误"


@dataclass
class Received(Counts):
    """What the platform accepted and refused, in arrival order."""

    accepted: defaultdict[str, list[dict[str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # endpoint -> decoded form fields
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (endpoint, code, msg)


class ZhejiangEndoscopeSimulator(SimulatedCloud[Received]):
    """`await start()`, point the uplink's base_url at `base_url`, inspect `received`."""

    faults: ZhejiangFaults

    def __init__(
        self, name: str, config: ZhejiangEndoscopeSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        faults = ZhejiangFaults(
            fail_every=config.fail_every,
            outage_after=config.outage_after,
            outage_for=config.outage_for,
        )
        super().__init__(name, config.host, config.port, faults, Received(), state_dir=state_dir)
        self.config = config
        self._signer = SCHEMES[config.sign_scheme]
        self._rfid_of: dict[str, str] = {}  # endoscope number -> rfid (addEndoSocopeInfo)
        self._cleanings: defaultdict[str, set[str]] = defaultdict(set)  # rfid -> cleanIds

    @property
    def base_url(self) -> str:
        """The uplink's base_url for this simulator."""
        return f"http://{self.host}:{self.port}{self.config.path_prefix}"

    def add_routes(self, app: web.Application) -> None:
        """The token endpoint and every /endoscope/<name> endpoint of the seed."""
        prefix = self.config.path_prefix.rstrip("/")
        app.router.add_get(f"{prefix}/auth/getAccessToken", self._token)
        for endpoint in ENDPOINTS:
            app.router.add_post(f"{prefix}/endoscope/{endpoint}", self._upload)

    def _verdict_of(self, response: web.StreamResponse) -> tuple[Verdict, int | None, str]:
        raw = response.body if isinstance(response, web.Response) else None
        if isinstance(raw, bytes) and raw.startswith(b"<JsonResult>"):
            root = ET.fromstring(raw)  # noqa: S314 - our own answer
            found = root.findtext("code") or ""
            answer = {"code": int(found) if found.isdigit() else found, "msg": root.findtext("msg")}
            return self.judge(response.status, answer)
        return super()._verdict_of(response)

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """Accepted: HTTP 200 with code 200; refused: any other code, in `msg`."""
        if status != 200:
            return super().judge(status, answer)
        if not isinstance(answer, dict) or "code" not in answer:
            return "failed", status, "malformed answer (no code)"
        platform_code = answer["code"]
        verdict: Verdict = "accepted" if platform_code == CODE_OK else "refused"
        return verdict, platform_code, str(answer.get("msg", ""))

    def memory(self) -> dict[str, Any]:
        """Which scope is which RFID, and the cleanings that count for each scope's next use."""
        cleanings = {rfid: sorted(ids) for rfid, ids in self._cleanings.items()}
        return {"rfid_of": dict(self._rfid_of), "cleanings": cleanings}

    def restore(self, memory: dict[str, Any]) -> None:
        """Take back `memory()` from the state folder."""
        self._rfid_of = dict(memory.get("rfid_of") or {})
        for rfid, ids in (memory.get("cleanings") or {}).items():
            self._cleanings[rfid] = set(ids)

    def forget(self) -> None:
        """Forget every scope and cleaning."""
        self._rfid_of.clear()
        self._cleanings.clear()

    async def wait_accepted(self, endpoint: str, count: int = 1) -> list[dict[str, str]]:
        """Return the endpoint's accepted forms once there are `count` of them."""
        await self.wait_until(lambda r: len(r.accepted[endpoint]) >= count)
        return self.received.accepted[endpoint]

    async def _token(self, request: web.Request) -> web.Response:
        query = request.query
        secret = self.config.access_secret.get_secret_value()
        timestamp = query.get("timestamp", "")
        if not _TIMESTAMP.match(timestamp):
            return _answer(CODE_INVALID, "参数timestamp格式错误")
        if query.get("accessKey") != self.config.access_key or query.get("accessSecret") != secret:
            return _answer(CODE_SIGN, "accessKey或accessSecret错误")
        params = {k: v for k, v in query.items() if k != "sign"}
        if query.get("sign") != self._signer(self.config.access_key, secret, timestamp, params):
            return _answer(CODE_SIGN, "签名错误")
        token = self.issue_token(self.config.token_ttl)
        return _answer(CODE_OK, "成功", {"accessToken": token, "expiresIn": self.config.token_ttl})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path.rsplit("/", 1)[-1]
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if self.faults.busy_next > 0:
            self.faults.busy_next -= 1
            return await self._refuse(endpoint, CODE_BUSY, "系统繁忙，请稍后重试")
        if self.faults.error_next > 0:
            self.faults.error_next -= 1
            return await self._refuse(endpoint, self.faults.error_code, self.faults.error_msg)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        code, msg = self._check(endpoint, form, request.headers.get("accessToken"))
        if code != CODE_OK:
            return await self._refuse(endpoint, code, msg)
        async with self.arrived:
            self._record(endpoint, form)
            self.received.accepted[endpoint].append(form)
            self.arrived.notify_all()
        return self._answer(CODE_OK, "上传成功")

    def _answer(self, code: int, msg: str) -> web.Response:
        """An upload's answer, in JSON or in the seed's XML."""
        if self.config.answer_format == "json":
            return _answer(code, msg)
        root = ET.Element("JsonResult")
        ET.SubElement(root, "data")
        ET.SubElement(root, "code").text = str(code)
        ET.SubElement(root, "msg").text = msg
        body = ET.tostring(root, encoding="unicode")
        return web.Response(text=body, content_type="application/xml", charset="utf-8")

    def _check(
        self, endpoint: str, form: dict[str, str], header_token: str | None
    ) -> tuple[int, str]:
        token = form.get("accessToken") or header_token
        needs_token = lists(endpoint, "accessToken") or token is not None
        if needs_token and not self.token_valid(token):
            return CODE_TOKEN, MSG_EXPIRED
        timestamp = form.get("timestamp", "")
        if not _TIMESTAMP.match(timestamp):
            return CODE_INVALID, "参数timestamp不能为空或格式错误"
        secret = self.config.access_secret.get_secret_value()
        unsigned = {k: v for k, v in form.items() if k != "sign"}
        if form.get("sign") != self._signer(self.config.access_key, secret, timestamp, unsigned):
            return CODE_SIGN, "签名错误"
        problems = validate(endpoint, form, self.config.time_format, self.config.date_format)
        if problems:
            return CODE_INVALID, "参数校验失败：" + "；".join(problems)
        if endpoint == "uploadUseStepData":
            rfid = self._rfid_of.get(form["number"], form["number"])
            if form["cleanId"] not in self._cleanings.get(rfid, set()):
                return CODE_NOT_CLEANED, "该内镜未清洗"
        return CODE_OK, ""

    def _record(self, endpoint: str, form: dict[str, str]) -> None:
        """The platform's memory of scopes: which cleanings count for the next use."""
        if endpoint == "addEndoSocopeInfo":
            self._rfid_of[form["number"]] = form["rfidNumber"]
        elif endpoint == "uploadReadData":
            self._cleanings[form["deviceRfidNumber"]].add(form["cleanId"])
        elif endpoint == "uploadUseStepData":
            self._cleanings.pop(self._rfid_of.get(form["number"], form["number"]), None)
        else:
            return
        self.save()

    async def _refuse(self, endpoint: str, code: int, msg: str) -> web.Response:
        async with self.arrived:
            self.received.refused.append((endpoint, code, msg))
            self.arrived.notify_all()
        return self._answer(code, msg)


def _answer(code: int, msg: str, data: object = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": data}, dumps=_dumps)


def build(
    name: str, config: ZhejiangEndoscopeSimulatorConfig, state_dir: Path | None = None
) -> ZhejiangEndoscopeSimulator:
    """Make the simulator from its validated config."""
    return attach(ZhejiangEndoscopeSimulator(name, config, state_dir), config)


async def serve(
    host: str = "127.0.0.1",
    port: int = 8790,
    *,
    access_key: str = "edge-agent",
    access_secret: str = "simulator-secret",  # noqa: S107 - the demo's well-known secret
    token_ttl: float = 7200.0,
    sign_scheme: SchemeName = DEFAULT_SCHEME,
    ready: Callable[[ZhejiangEndoscopeSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate zhejiang-endoscope`)."""
    config = ZhejiangEndoscopeSimulatorConfig.model_validate(
        {
            "type": "zhejiang_endoscope",
            "host": host,
            "port": port,
            "access_key": access_key,
            "access_secret": access_secret,
            "token_ttl": token_ttl,
            "sign_scheme": sign_scheme,
        }
    )
    simulator = ZhejiangEndoscopeSimulator("zhejiang_endoscope", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
