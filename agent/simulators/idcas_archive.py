"""The IDCAS cloud archive (seed 002) as a simulator, on one port: the auth centre under /auth
(client and password grants, its own RSA key pair, the password decrypted), the gateway under
/api and /doc (the WebApis with canned data, the statistics and print flags it was told), and
the portal's pages, which verify each link as the platform would: 200, or 403 with the reason."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from Crypto.PublicKey import RSA
from pydantic import Field

from agent.config import TimeZoneName
from agent.crypto import des3, rsa
from agent.crypto.digest import hexdigest
from agent.errors import CryptoError
from agent.simulators.base import Counts, Faults, SimulatedCloud
from agent.simulators.control import ControlOptions, ControlServer, attach, run_until_cancelled
from agent.simulators.ledger import Verdict
from agent.uplinks.idcas_archive.pages import PAGES, Page

KEY_FILE = "idcas-rsa-private.pem"
KEY_NAME = "TransmissionSecurity.RSA.PublicKey"
OK = 0


class IdcasArchiveSimulatorConfig(ControlOptions):
    """[simulators.<name>] type = "idcas_archive" """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8793
    client_id: str = "edge-agent"
    client_secret: str = "simulator-secret"  # noqa: S105 - the simulator's own test client
    username: str = "his"
    password: str = "simulator-password"  # noqa: S105 - the simulator's own test account
    des_key: str = "eWorldTomTaw#7=*"  # the seed's test keys
    des_iv: str = des3.SEED_002_IV
    md5_key: str = "TomtawMD5Key"
    account_id: str = "doctor-001"  # what the sev it hands out decrypts to
    client_token_ttl: Annotated[float, Field(gt=0)] = 3600.0
    user_token_ttl: Annotated[float, Field(gt=0)] = 43200.0  # 3.2.3: 12 hours
    timestamp_window: Annotated[float, Field(gt=0)] = 300.0  # seconds either side of its clock
    timezone: TimeZoneName = "Asia/Shanghai"
    rsa_private_key: str | None = None  # PEM; default: made once in the state folder, or fresh


@dataclass
class IdcasFaults(Faults):
    """The shared switches, plus the platform's key rotation."""

    rotate_key_next: int = 0  # a new RSA key pair before the next N key requests


@dataclass
class Received(Counts):
    """What the platform understood: pages opened, statistics and print flags, passwords."""

    pages: list[dict[str, Any]] = field(default_factory=list)  # page, status, reason
    statistics: list[dict[str, Any]] = field(default_factory=list)
    print_flags: list[dict[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # WebApi names, in order
    user_tokens_issued: int = 0
    keys_served: int = 0


class IdcasArchiveSimulator(SimulatedCloud[Received]):
    """The simulator: `await start()`, point the agent at its four URLs, inspect `received`."""

    faults: IdcasFaults

    def __init__(
        self, name: str, config: IdcasArchiveSimulatorConfig, state_dir: Path | None = None
    ) -> None:
        super().__init__(
            name, config.host, config.port, IdcasFaults(), Received(), state_dir=state_dir
        )
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.private_key = _private_key(config.rsa_private_key, state_dir)
        self.account_key = self.private_key  # sev's key: it stays when the transmission key rotates
        self.sev = rsa.encrypt_text(self.account_key.public_key(), config.account_id)
        self._user_tokens: set[str] = set()

    @property
    def url(self) -> str:
        """Base URL: auth_url is url/auth, gateway url/api, doc gateway url/doc, portal url."""
        return f"http://{self.host}:{self.port}"

    @property
    def public_key(self) -> str:
        """The RSA public key it serves (Base64 SPKI DER, as Java platforms do)."""
        return rsa.public_text(self.private_key)

    def rotate_key(self) -> None:
        """A new key pair: passwords encrypted under the old key are refused from now on."""
        self.private_key = RSA.generate(2048)

    def add_routes(self, app: web.Application) -> None:
        """Auth centre, gateway WebApis, document gateway, portal pages."""
        app.router.add_post("/auth/connect/token", self._token)
        app.router.add_get("/api/api-operate/configurations", self._configurations)
        app.router.add_post("/api/api-idcas/observations/recognition", self._statistics)
        app.router.add_get("/api/api-idcas/observations/recognition", self._webapi)  # 6.1
        app.router.add_get("/doc/api-document/print/print-flag", self._print_flag)
        for (prefix, path), name in CANNED.items():
            if name != "recognition":
                app.router.add_route("*", f"{prefix}/{path}", self._webapi)
        for page in PAGES.values():
            app.router.add_get(page.path, self._page)

    def judge(self, status: int, answer: Any) -> tuple[Verdict, int | None, str]:
        """{code, msg}: 0 accepted, any other code refused."""
        if isinstance(answer, dict) and "code" in answer and status < 300:
            number = int(answer["code"])
            verdict: Verdict = "accepted" if number == OK else "refused"
            return verdict, number, str(answer.get("msg") or "")
        return super().judge(status, answer)

    async def _token(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        form = await request.post()
        cfg = self.config
        if form.get("client_id") != cfg.client_id or form.get("client_secret") != cfg.client_secret:
            return web.json_response({"error": "invalid_client"}, status=400)
        grant = form.get("grant_type")
        if grant == "client_credentials":
            token = self.issue_token(cfg.client_token_ttl)
            return _grant(token, cfg.client_token_ttl)
        if grant != "password":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            password = rsa.decrypt_text(self.private_key, str(form.get("password", "")))
        except CryptoError:
            password = None
        if form.get("username") != cfg.username or password != cfg.password:
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = self.issue_token(cfg.user_token_ttl)
        self._user_tokens.add(token)
        self.received.user_tokens_issued += 1
        return _grant(token, cfg.user_token_ttl)

    def _bearer(self, request: web.Request, user: bool = True) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return (
            scheme.lower() == "bearer"
            and self.token_valid(token)
            and (not user or token in self._user_tokens)
        )

    async def _configurations(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if not self._bearer(request, user=False):
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.query.get("key") != KEY_NAME:
            return _envelope(-1, "unknown key")
        if self.faults.rotate_key_next > 0:
            self.faults.rotate_key_next -= 1
            self.rotate_key()
        self.received.keys_served += 1
        return _envelope(OK, "成功", self.public_key)

    async def _statistics(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if not self._bearer(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        missing = [
            name
            for name, kind in (("org_code", str), ("patients_cnt", int), ("work_stations", int))
            if not isinstance(body.get(name), kind)
        ]
        if missing:
            return _envelope(-1, f"参数错误: {', '.join(missing)}")
        async with self.arrived:
            arrival = datetime.now(self.zone)
            self.received.statistics.append({**body, "arrived": arrival.isoformat()})
            self.arrived.notify_all()
        return _envelope(OK, "成功")

    async def _print_flag(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if not self._bearer(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        params = dict(request.query)
        required = ("print_type", "org_code", "print_time", "client_host", "client_name")
        missing = [name for name in required if not params.get(name)]
        if missing:
            return _envelope(-1, f"参数错误: {', '.join(missing)}")
        async with self.arrived:
            self.received.print_flags.append(params)
            self.arrived.notify_all()
        return _envelope(OK, "成功")

    async def _webapi(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        if not self._bearer(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        name = next(n for (pre, p), n in CANNED.items() if _fits(f"{pre}/{p}", request.path))
        async with self.arrived:
            self.received.calls.append(name)
            self.arrived.notify_all()
        if name == "exam-detail" and f"/{EXAM['id']}/" not in request.path:
            return _envelope(-1, "检查不存在")
        return _envelope(OK, "成功", CANNED_DATA[name])

    async def _page(self, request: web.Request) -> web.Response:
        refusal = await self.misbehave(request)
        if refusal is not None:
            return refusal
        page = next(p for p in PAGES.values() if p.path == request.path)
        reason = self.verify(page, request.query)
        status = 403 if reason else 200
        async with self.arrived:
            self.received.pages.append({"page": page.name, "status": status, "reason": reason})
            self.arrived.notify_all()
        if reason:
            return web.Response(status=403, text=f"403 {reason}", content_type="text/plain")
        return web.Response(
            text=f"<html><body>{page.title}</body></html>", content_type="text/html"
        )

    def verify(self, page: Page, query: Any) -> str:
        """Why the platform refuses this link ("" when it opens)."""
        if page.style in ("h5", "h5plain"):
            if query.get("token", "") not in self._user_tokens or not self.token_valid(
                query["token"]
            ):
                return "token: not a valid user access token"
            return self._values(page, query, page.style == "h5")
        if page.style == "plain":
            return ""
        sev, stamp, sign = (query.get(n, "") for n in ("sev", "timestamp", "sign"))
        token = query.get("token", "") if page.style == "signed" else ""
        if hexdigest("md5", f"{token}{sev}{stamp}{self.config.md5_key}") != sign:
            return "sign: does not match md5(token + sev + timestamp + key)"
        try:
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.zone)
        except ValueError:
            return "timestamp: not yyyy-MM-dd HH:mm:ss"
        if abs(datetime.now(self.zone) - at) > timedelta(seconds=self.config.timestamp_window):
            return "timestamp: outside the accepted window"
        try:
            account = rsa.decrypt_text(self.account_key, sev, source="sev")
        except CryptoError:
            return "sev: does not decrypt with the platform's key"
        if account != self.config.account_id:
            return "sev: unknown account"
        if page.style == "reminder":
            return self._values(page, query, False)
        try:
            body = json.loads(self._decrypt(token, "token"))
        except (CryptoError, ValueError):
            return "token: does not decrypt to JSON with the 3DES key"
        missing = [p.name for p in page.token if p.required and body.get(p.name) in ("", None)]
        if missing or not isinstance(body, dict):
            return f"token: {', '.join(missing)} missing"
        return self._values(page, query, False)

    def _values(self, page: Page, query: Any, encrypted: bool) -> str:
        for p in page.query:
            value = query.get(p.name, "")
            if encrypted and value:
                try:
                    value = self._decrypt(value, p.name)
                except CryptoError:
                    return f"{p.name}: does not decrypt with the 3DES key"
            if p.required and not value:
                return f"{p.name}: missing"
            if value and p.choices and value not in p.choices:
                return f"{p.name}: not in its dictionary"
        return ""

    def _decrypt(self, text: str, source: str) -> str:
        return des3.decrypt_text(text, self.config.des_key, iv=self.config.des_iv, source=source)


CANNED: dict[tuple[str, str], str] = {
    ("/api", "api-idcas/shares/qrcode"): "qrcode",
    ("/api", "api-idcas/observations/recognition"): "recognition",
    ("", "observations/image-web-view-url"): "image-viewer",
    ("/api", "api-idcas/observations/exams"): "exams",
    ("/api", "api-idcas/observations/observation-change-download-list"): "province-exams",
    ("/api", "api-idcas/observations/observations-from-main-and-changedownload"): "all-exams",
    ("/api", "api-idcas/observations/{id}/exam-detail"): "exam-detail",
    ("/api", "api-idcas/observations/report-view-url"): "report-view-url",
    ("/api", "api-idcas/observations/image-web-view-url"): "image-view-url",
    ("/doc", "api-document/print/exam-list"): "print-exams",
    ("/doc", "api-document/print/file-list"): "print-files",
}
EXAM = {"id": 10001, "patient_id": "P0001", "patient_name": "测试患者", "accession_number": "CT-1",
        "exam_type": "CT", "exam_item": "头颅平扫", "result_state": "已审核"}  # fmt: skip
CANNED_DATA: dict[str, Any] = {
    "qrcode": "https://portal.example/s/abc123",
    "image-viewer": "/viewer/index.html?k=abc",
    "recognition": "https://portal.example/clinicview/recognition.html?source=his",
    "exams": [EXAM],
    "province-exams": [EXAM],
    "all-exams": [{**EXAM, "table_type": 0}],
    "exam-detail": EXAM,
    "report-view-url": "https://portal.example/s/report1",
    "image-view-url": "https://portal.example/s/image1",
    "print-exams": [{"id": 10001, "accession_number": "CT-1", "print_count": 0}],
    "print-files": [
        {"file_type": "Result", "file_format": "Pdf", "file_bytes": "JVBERi0=", "file_path": ""}
    ],
}


def _fits(pattern: str, path: str) -> bool:
    if "{id}" not in pattern:
        return pattern == path
    head, tail = pattern.split("{id}")
    return path.startswith(head) and path.endswith(tail)


def _grant(token: str, ttl: float) -> web.Response:
    return web.json_response(
        {"access_token": token, "expires_in": int(ttl), "token_type": "Bearer", "scope": "api"}
    )


def _envelope(code: int, msg: str, data: Any = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": data}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _private_key(given: str | None, state_dir: Path | None) -> RSA.RsaKey:
    """The given key, the one kept in the state folder, or a new one (kept there if given one)."""
    if given:
        return rsa.load_key(given, "rsa_private_key")
    path = state_dir / KEY_FILE if state_dir is not None else None
    if path is not None and path.exists():
        return rsa.load_key(path.read_text(encoding="ascii"), str(path))
    key = RSA.generate(2048)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(key.export_key("PEM").decode("ascii"))
    return key


def build(
    name: str, config: IdcasArchiveSimulatorConfig, state_dir: Path | None = None
) -> IdcasArchiveSimulator:
    """Make the simulator from its validated config."""
    return attach(IdcasArchiveSimulator(name, config, state_dir), config)


async def serve(
    config: IdcasArchiveSimulatorConfig,
    *,
    ready: Callable[[IdcasArchiveSimulator], None] | None = None,
    control: tuple[str, int] | None = None,
    control_ready: Callable[[ControlServer], None] | None = None,
    state_dir: Path | None = None,
) -> None:
    """Run the simulator until cancelled (`edge-agent simulate idcas-archive`)."""
    simulator = IdcasArchiveSimulator("idcas_archive", config, state_dir)
    await run_until_cancelled(simulator, control, ready, control_ready)
