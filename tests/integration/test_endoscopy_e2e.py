"""Issue 3 acceptance: the real agent, readers on TCP, serial ptys and MQTT, the Zhejiang simulator.

Nine stations: three readers the agent reaches over TCP (the test plays them as servers, RDM6300
frames), three on socat pseudo-terminal pairs (decimal lines), three publishing to a real
mosquitto (JSON, reader id from the topic). Two scopes go through a full cycle each, with badge
taps and a patient code at the use station. The test waits for every tap to be journaled before
the next, computes the platform records it expects on its own from the taps and their journaled
times, and compares them field by field, per scope and in order, with what the simulator
accepted. The fault variant adds 5xx answers, connection resets, expired tokens and one SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiomqtt
from pydantic import SecretStr

from agent import toml_out
from agent.simulators.zhejiang_endoscope import (
    Received,
    ZhejiangEndoscopeSimulator,
    ZhejiangEndoscopeSimulatorConfig,
)
from agent.uplinks.zhejiang_endoscope.fields import AUTH_FIELDS
from drivers.rfid.rdm6300 import encode
from tests.integration.test_reader_serial import pty_pair, socat
from tests.mosquitto import Mosquitto, running_mosquitto
from tests.watched_agent import LogLine, WatchedAgent

KEY, SECRET = "e2e-agent", "e2e-secret-4711"
UNIQUE, CREDIT = "330100001", "12330100470000000X"
INSTITUTION = {"uniqueCode": UNIQUE, "creditCode": CREDIT}
MQTT_CLIENT = "e2e-agent"
ZONE = ZoneInfo("Asia/Shanghai")
DEFAULT_USER = "edge-agent"
RATIO = "OPA-2611-01"
CABINET = "CAB01"
WAIT = 20.0  # any single await; a hang fails the test instead of blocking the suite
FINISH = 30.0  # the platform holding every record after the last tap

Link = Literal["tcp", "serial", "mqtt"]
Form = dict[str, str]
Record = tuple[str, Form]  # (endpoint, record fields without the auth fields)


@dataclass(frozen=True)
class Station:
    reader: str
    kind: str
    name: str
    link: Link
    extra: tuple[tuple[str, Any], ...] = ()


STATIONS = [
    Station("R1", "pre_clean", "床侧预处理", "tcp"),
    Station("R2", "leak_test", "测漏", "serial"),
    Station("R3", "enzyme", "酶洗", "mqtt", (("min_interval", 120),)),
    Station("R4", "rinse", "漂洗", "tcp"),
    Station("R5", "disinfect", "消毒", "serial", (("ratio_number", RATIO),)),
    Station("R6", "final_rinse", "终末漂洗", "mqtt"),
    Station("R7", "dry", "干燥", "tcp"),
    Station("R8", "store", "储存", "serial", (("cabinet", CABINET),)),
    Station("R9", "use", "使用", "mqtt"),
]
BY_READER = {s.reader: s for s in STATIONS}


@dataclass(frozen=True)
class Scope:
    number: str
    rfid: str  # 40-bit hex, as an RDM6300 reads it
    type_name: str
    brand: str


@dataclass(frozen=True)
class Badge:
    rfid: str
    id: str
    name: str


SCOPES = [
    Scope("GIF-001", "0100D507D0", "胃镜", "Olympus"),
    Scope("CF-002", "0100AABBCC", "肠镜", "Fujifilm"),
]
NURSE, TECH = Badge("0A1B2C3D4E", "N001", "王护士"), Badge("0A55667788", "N002", "李技师")


@dataclass(frozen=True)
class Tap:
    reader: str
    what: Scope | Badge | str  # a str is a patient code (wristband) at the use station

    @property
    def code(self) -> str:
        return self.what if isinstance(self.what, str) else self.what.rfid

    def canonical(self) -> str:
        """The tag the agent journals for this tap, as the station's reader delivers it."""
        if BY_READER[self.reader].link == "serial":
            return self.code[-8:]  # a decimal line carries the low 32 bits
        return self.code


def plan() -> list[Tap]:
    """Badges first, then both scopes station by station (interleaved), then patients and uses."""
    taps = [Tap("R1", NURSE), Tap("R5", TECH), Tap("R9", NURSE)]
    for station in STATIONS[:-1]:
        taps.extend(Tap(station.reader, scope) for scope in SCOPES)
    for n, scope in enumerate(SCOPES, start=1):
        taps.extend([Tap("R9", f"PAT-{n:04d}"), Tap("R9", scope)])
    return taps


# --- the agent's configuration --------------------------------------------------------------


def write_config(
    tmp_path: Path,
    platform: ZhejiangEndoscopeSimulator,
    broker: Mosquitto,
    tcp_ports: dict[str, int],
    serial_devices: dict[str, Path],
) -> Path:
    sources: dict[str, Any] = {}
    for station in STATIONS:
        quick = {"debounce": 0, "reconnect_initial": 0.02, "reconnect_max": 0.2}
        if station.link == "tcp":
            url, protocol = f"tcp://127.0.0.1:{tcp_ports[station.reader]}", "rdm6300"
        elif station.link == "serial":
            url, protocol = f"serial://{serial_devices[station.reader]}?baud=9600", "decimal"
        else:
            continue
        sources[f"reader_{station.reader.lower()}"] = {
            "type": "rfid_reader",
            "url": url,
            "protocol": protocol,
            "reader_id": station.reader,
            **quick,
        }
    sources["mqtt_readers"] = {
        "type": "mqtt_rfid",
        "host": broker.host,
        "port": broker.port,
        "client_id": MQTT_CLIENT,
        "topic": "readers/+/tag",
        "reader_from_topic": 1,
        "connect_timeout": 2.0,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.2,
    }
    head = toml_out.dumps(
        {
            "agent": {"state_dir": "state", "shutdown_timeout": 1.0, "stats_interval": 0},
            "log": {"format": "json", "level": "info"},
            "uplinks": {
                "zhejiang": {
                    "type": "zhejiang_endoscope",
                    "base_url": platform.base_url,
                    "access_key": KEY,
                    "access_secret": SECRET,
                    "unique_code": UNIQUE,
                    "credit_code": CREDIT,
                    "request_timeout": 5.0,
                    "retry_base": 0.05,
                    "retry_cap": 0.5,
                    "breaker_open_seconds": 0.2,
                }
            },
            "sources": sources,
            "domains": {
                "endoscopy": {
                    "type": "reprocessing",
                    "uplink": "zhejiang",
                    "institution": {"unique_code": UNIQUE, "credit_code": CREDIT},
                    "quality": {"photo_base_url": "https://agent.hospital.example/photos/"},
                }
            },
        }
    )
    tables = [
        (
            "stations",
            {
                "reader": s.reader,
                "step_id": n,
                "name": s.name,
                "order": n,
                "kind": s.kind,
                **dict(s.extra),
            },
        )
        for n, s in enumerate(STATIONS, start=1)
    ]
    tables += [
        (
            "endoscopes",
            {"number": s.number, "rfid": s.rfid, "type_name": s.type_name, "brand": s.brand},
        )
        for s in SCOPES
    ]
    tables += [("staff", {"rfid": b.rfid, "id": b.id, "name": b.name}) for b in (NURSE, TECH)]
    body = "".join(
        f"\n[[domains.endoscopy.{array}]]\n"
        + "".join(f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in t.items())
        for array, t in tables
    )
    path = tmp_path / "agent.toml"
    path.write_text(head + body, encoding="utf-8")
    return path


# --- the devices ----------------------------------------------------------------------------


class TcpReaderPeer:
    """A networked reader: a TCP server the agent connects to; taps go to the newest link."""

    def __init__(self) -> None:
        self.port = 0
        self.links: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._linked, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _linked(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._changed:
            self.links.append(writer)
            self._changed.notify_all()

    async def wait_links(self, count: int) -> None:
        """Return once the agent has connected `count` times in all."""
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: len(self.links) >= count)

    async def send(self, data: bytes) -> None:
        writer = self.links[-1]
        writer.write(data)
        await writer.drain()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.links:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()


@dataclass(frozen=True)
class JournaledTap:
    reader: str
    tag: str
    at: datetime


class JournalView:
    """The agent's journal, read-only, as the test waits on it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def taps(self) -> list[JournaledTap]:
        rows = self.query(
            "SELECT payload, occurred_at FROM events WHERE kind = 'rfid.read' ORDER BY seq"
        )
        return [
            JournaledTap(
                json.loads(p)["reader_id"], json.loads(p)["tag"], datetime.fromisoformat(at)
            )
            for p, at in rows
        ]

    async def wait_taps(self, count: int) -> list[JournaledTap]:
        async with asyncio.timeout(WAIT):
            while len(taps := self.taps()) < count:
                await asyncio.sleep(0.01)
        return taps


def logged(event: str, source: str) -> Callable[[LogLine], bool]:
    """A check for the log line of `event` from `source`."""
    return lambda line: line.get("event") == event and line.get("source") == source


class Centre:
    """The endoscopy centre's readers, as the test plays them; every tap waits for its commit."""

    def __init__(
        self,
        tcp: dict[str, TcpReaderPeer],
        serial: dict[str, int],
        mqtt: aiomqtt.Client,
        journal: JournalView,
    ) -> None:
        self.tcp = tcp
        self.serial = serial
        self.mqtt = mqtt
        self.journal = journal
        self.sent: list[Tap] = []
        self.journaled: list[JournaledTap] = []

    async def connected(self, agent: WatchedAgent, generation: int) -> None:
        """Return once every reader of this agent process is linked (the `generation`-th run)."""
        for peer in self.tcp.values():
            await peer.wait_links(generation)
        for reader in self.serial:
            await agent.wait_log(logged("transport.online", f"reader_{reader.lower()}"))
        await agent.wait_log(logged("mqtt.online", "mqtt_readers"))

    async def tap(self, tap: Tap) -> None:
        link = BY_READER[tap.reader].link
        if link == "tcp":
            await self.tcp[tap.reader].send(encode(bytes.fromhex(tap.code)))
        elif link == "serial":
            os.write(self.serial[tap.reader], f"{int(tap.code, 16) & 0xFFFFFFFF:010d}\r\n".encode())
        else:
            payload = json.dumps({"tag": tap.code})
            await self.mqtt.publish(f"readers/{tap.reader}/tag", payload, qos=1)
        self.sent.append(tap)
        self.journaled = await self.journal.wait_taps(len(self.sent))
        last = self.journaled[-1]
        assert (last.reader, last.tag) == (tap.reader, tap.canonical()), (last, tap)

    def mqtt_taps(self) -> int:
        return sum(BY_READER[t.reader].link == "mqtt" for t in self.sent)


@asynccontextmanager
async def endoscopy_centre(
    tmp_path: Path, platform: ZhejiangEndoscopeSimulator
) -> AsyncIterator[tuple[Centre, Path, Mosquitto]]:
    """Readers, broker and the agent's config; yields the centre (agent not started yet)."""
    socat()  # fails under CI=true when missing, skips otherwise
    async with AsyncExitStack() as stack:
        broker = await stack.enter_async_context(running_mosquitto(tmp_path / "mosquitto"))
        tcp: dict[str, TcpReaderPeer] = {}
        serial: dict[str, int] = {}
        devices: dict[str, Path] = {}
        for station in STATIONS:
            if station.link == "tcp":
                peer = TcpReaderPeer()
                await peer.start()
                stack.push_async_callback(peer.stop)
                tcp[station.reader] = peer
            elif station.link == "serial":
                device, end = (
                    tmp_path / f"tty{station.reader}",
                    tmp_path / f"tty{station.reader}-test",
                )
                await stack.enter_async_context(pty_pair(device, end))
                serial[station.reader] = os.open(end, os.O_RDWR | getattr(os, "O_NOCTTY", 0))
                stack.callback(os.close, serial[station.reader])
                devices[station.reader] = device
        mqtt = await stack.enter_async_context(
            aiomqtt.Client(broker.host, broker.port, identifier="e2e-readers")
        )
        config = write_config(
            tmp_path, platform, broker, {r: p.port for r, p in tcp.items()}, devices
        )
        journal = JournalView(tmp_path / "state" / "journal.db")
        yield Centre(tcp, serial, mqtt, journal), config, broker


class RecordingPlatform(ZhejiangEndoscopeSimulator):
    """The simulator, also keeping every accepted form in arrival order across endpoints."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[str, Form]] = []

    def _record(self, endpoint: str, form: dict[str, str]) -> None:
        super()._record(endpoint, form)
        self.arrivals.append((endpoint, form))


@asynccontextmanager
async def zhejiang_platform() -> AsyncIterator[RecordingPlatform]:
    simulator = RecordingPlatform(
        "platform",
        ZhejiangEndoscopeSimulatorConfig(
            type="zhejiang_endoscope", port=0, access_key=KEY, access_secret=SecretStr(SECRET)
        ),
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


# --- what the platform must end up with, computed from the taps alone -----------------------


def local(at: datetime) -> str:
    return at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


def expected_master_data() -> list[Record]:
    records: list[Record] = []
    for scope in SCOPES:
        fields = {"number": scope.number, "rfidNumber": scope.rfid, "typeName": scope.type_name}
        fields |= {"model": scope.brand, "status": "0"}
        records.append(("addEndoSocopeInfo", {**fields, **INSTITUTION}))
    for n, station in enumerate(STATIONS, start=1):
        reader = {"rfidNumber": station.reader, "stepId": str(n), "stepName": station.name}
        records.append(("addCardReaderInfo", {**reader, "status": "0", **INSTITUTION}))
        step = {"stepId": str(n), "stepName": station.name, "orderId": str(n)}
        if "min_interval" in dict(station.extra):
            step["orderTime"] = str(dict(station.extra)["min_interval"])
        records.append(("addCleanStepInfo", {**step, **INSTITUTION}))
    return records


@dataclass
class OpenStep:
    station: Station
    started: datetime
    user: str


def expected_records(taps: list[Tap], journaled: list[JournaledTap]) -> dict[str, list[Record]]:
    """Per scope number, the records one cycle and its use imply, in the order they are due."""
    operators: dict[str, str] = {}
    patients: dict[str, str] = {}
    clean_ids: dict[str, str] = {}
    open_steps: dict[str, OpenStep] = {}
    stored: dict[str, datetime] = {}
    records: dict[str, list[Record]] = {scope.number: [] for scope in SCOPES}
    for tap, at in zip(taps, (j.at for j in journaled), strict=True):
        if isinstance(tap.what, Badge):
            operators[tap.reader] = tap.what.name
            continue
        if isinstance(tap.what, str):
            patients[tap.reader] = tap.what
            continue
        scope, station = tap.what, BY_READER[tap.reader]
        user = operators.get(tap.reader, DEFAULT_USER)
        out = records[scope.number]
        if station.kind == "use":
            out.append(
                (
                    "endoscopeSave",
                    {
                        "storagetNumber": CABINET,
                        "rfidNumber": scope.number,  # scope_refs: 内镜编号 (the default)
                        "storeTime": local(stored[scope.number]),
                        "takeoutTime": local(at),
                        **INSTITUTION,
                    },
                )
            )
            use = {"cleanId": clean_ids[scope.number], "identityId": patients.pop(tap.reader)}
            use |= {"number": scope.number, "uploadUser": user}
            out.append(("uploadUseStepData", {**use, **INSTITUTION}))
            continue
        clean_id = clean_ids.setdefault(
            scope.number, f"{scope.number}-{at.astimezone(ZONE):%Y%m%d%H%M%S}-1"
        )
        step = open_steps.get(scope.number)
        if step is not None and step.station.kind in ("enzyme", "disinfect"):
            span = {"startTime": local(step.started), "endTime": local(at)}
            who = {"rfidNumber": scope.number, "userName": step.user, "cleanId": clean_id}
            if step.station.kind == "enzyme":
                out.append(("uploadEnzymeWashData", {**who, **span, **INSTITUTION}))
            else:
                batch = {"type": "0", "ratioNumber": RATIO}
                out.append(("sterProcess", {**who, **span, **batch, **INSTITUTION}))
        open_steps[scope.number] = OpenStep(station, at, user)
        if station.kind == "store":
            stored[scope.number] = at
        read = {"cleanId": clean_id, "collectionTime": local(at), "deviceRfidNumber": scope.rfid}
        read |= {"readerId": station.reader, "uploadUser": user}
        out.append(("uploadReadData", {**read, **INSTITUTION}))
    return records


# --- comparing ------------------------------------------------------------------------------


def content(form: Form) -> Form:
    """A form without what the uplink adds for authentication (token, timestamp, sign)."""
    return {k: v for k, v in form.items() if k not in AUTH_FIELDS}


def key(record: Record) -> str:
    return record[0] + json.dumps(record[1], sort_keys=True, ensure_ascii=False)


MASTER = {"addEndoSocopeInfo", "addCardReaderInfo", "addCleanStepInfo"}


def scope_number(endpoint: str, form: Form) -> str:
    by_ref = {s.rfid: s.number for s in SCOPES} | {s.number: s.number for s in SCOPES}
    ref = form.get("deviceRfidNumber") or form.get("rfidNumber") or form.get("number", "")
    return by_ref[ref]


def per_scope_first_arrivals(platform: RecordingPlatform) -> dict[str, list[Record]]:
    """Per scope, each distinct record at its first arrival, in arrival order."""
    seen: set[str] = set()
    out: dict[str, list[Record]] = {scope.number: [] for scope in SCOPES}
    for endpoint, form in platform.arrivals:
        record = (endpoint, content(form))
        if endpoint in MASTER or key(record) in seen:
            continue
        seen.add(key(record))
        out[scope_number(endpoint, form)].append(record)
    return out


def all_arrived(platform: RecordingPlatform, expected: list[Record]) -> Callable[[Received], bool]:
    wanted = {key(r) for r in expected}
    return lambda _: wanted <= {key((e, content(f))) for e, f in platform.arrivals}


async def check_platform(
    platform: RecordingPlatform, centre: Centre, kills: int
) -> dict[str, list[Record]]:
    """Wait for every expected record, then compare field by field; return them per scope."""
    journaled = centre.journal.taps()
    assert len(journaled) == len(centre.sent), "a tap was journaled twice (or lost)"
    expected = expected_records(centre.sent, journaled)
    master = expected_master_data()
    every = [*master, *(r for records in expected.values() for r in records)]
    with suppress(TimeoutError):  # on a timeout the comparisons below say what is missing
        async with asyncio.timeout(FINISH):
            await platform.wait_until(all_arrived(platform, every))
    assert centre.journal.query("SELECT error FROM handler_failures") == []
    arrived = per_scope_first_arrivals(platform)
    for number, records in expected.items():
        theirs = arrived[number]
        assert len(theirs) == len(records), (
            number,
            [r[0] for r in theirs],
            [r[0] for r in records],
        )
        for n, (ours, got) in enumerate(zip(records, theirs, strict=True)):
            assert got[0] == ours[0], (number, n, got[0], ours[0])
            for field in sorted(ours[1].keys() | got[1].keys()):  # one by one, both ways
                assert got[1].get(field) == ours[1].get(field), (number, n, ours[0], field)
    master_arrived = sorted({key((e, content(f))) for e, f in platform.arrivals if e in MASTER})
    assert master_arrived == sorted(key(r) for r in master)
    copies = Counter(key((e, content(f))) for e, f in platform.arrivals)
    assert sum(copies.values()) == sum(len(v) for v in platform.received.accepted.values())
    worst = max(copies.values())
    assert worst - 1 <= kills, f"a record arrived {worst} times with {kills} kill(s)"
    return expected


# --- the tests ------------------------------------------------------------------------------


async def test_two_scopes_over_tcp_serial_and_mqtt_reach_the_platform_record_by_record(
    tmp_path,
):
    async with (
        zhejiang_platform() as platform,
        endoscopy_centre(tmp_path, platform) as (centre, config, _),
    ):
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        await centre.connected(agent, generation=1)
        for tap in plan():
            await centre.tap(tap)
        expected = await check_platform(platform, centre, kills=0)
        assert await agent.stop() == 0
    assert platform.received.refused == []
    kinds = [endpoint for endpoint, _ in expected["GIF-001"]]
    assert kinds == [
        *["uploadReadData"] * 3,
        "uploadEnzymeWashData",
        *["uploadReadData"] * 2,
        "sterProcess",
        *["uploadReadData"] * 3,
        "endoscopeSave",
        "uploadUseStepData",
    ]
    uses = platform.received.accepted["uploadUseStepData"]
    assert [(u["number"], u["identityId"], u["uploadUser"]) for u in uses] == [
        ("GIF-001", "PAT-0001", NURSE.name),
        ("CF-002", "PAT-0002", NURSE.name),
    ]
    assert len(platform.received.accepted["addEndoSocopeInfo"]) == 2


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition nothing notifies about (the simulator's fault counters, a log file)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def test_platform_faults_and_a_sigkill_lose_nothing_and_duplicate_at_most_once(tmp_path):
    async with (
        zhejiang_platform() as platform,
        endoscopy_centre(tmp_path, platform) as (centre, config, broker),
    ):
        platform.faults.fail_next = 6  # HTTP 503 to the first uploads (the master data)
        agent = WatchedAgent(config, tmp_path)
        await agent.start()
        await centre.connected(agent, generation=1)

        async def resets() -> None:
            await until(lambda: platform.faults.fail_next == 0)
            platform.faults.reset_next = 3  # then connections dropped without an answer

        async def expiry() -> None:
            await until(lambda: platform.faults.reset_next == 0)
            platform.expire_tokens()  # then every token issued so far is refused (401)

        async def hold() -> None:
            await platform.wait_until(lambda r: any(code == 401 for _, code, _ in r.refused))
            # Every MQTT tap acknowledged to the broker: none comes again after the kill.
            acked = f"Received PUBACK from {MQTT_CLIENT}"
            await until(lambda: broker.log().count(acked) >= centre.mqtt_taps())
            platform.faults.hold = True  # the next uploads stay unanswered: in flight at the kill

        async def kill() -> None:
            nonlocal agent
            await platform.wait_until(lambda r: r.held >= 1)
            await agent.kill()
            platform.release_held()  # the held forms may count now: resent, they arrive twice
            agent = WatchedAgent(config, tmp_path)
            await agent.start()
            await centre.connected(agent, generation=2)

        hooks: dict[int, Callable[[], Awaitable[None]]] = {
            8: resets,
            12: expiry,
            16: hold,
            17: kill,
        }
        for n, tap in enumerate(plan()):
            if n in hooks:
                await hooks[n]()
            await centre.tap(tap)
        await check_platform(platform, centre, kills=1)
        assert await agent.stop() == 0
    assert platform.received.tokens_issued >= 3  # the first, after the expiry, after the restart
    assert {code for _, code, _ in platform.received.refused} <= {401, 404}
