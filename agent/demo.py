"""`edge-agent demo`: config/demo.toml plus the imaging, washer and outage parts, run as usual.

The run's config is written to `<state-dir>/demo.toml` (inspect it, or point `edge-agent status`
at it) and run by the normal `Agent`, exactly as `edge-agent run` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import re
import shutil
import tomllib
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from Crypto.PublicKey import RSA

import agent
from agent import toml_out
from agent.config import Config
from agent.errors import AgentError
from agent.runtime import Agent, StateDirLock
from agent.simulators.demo_traffic import programme_seconds

CHECKOUT = Path(agent.__file__).resolve().parents[1]
BASE = CHECKOUT / "config" / "demo.toml"
DEFAULT_STATE_DIR = CHECKOUT / "var" / "demo"
PRIVATE_KEY = "city-imaging-private.pem"  # the city simulator's key: demo only, never a real one
WASHER, WASHER_SCOPE, WASHER_TAG = "AER-01", "GIF-HQ290-03", "00E1E2E3"
BLOCKED_TAG = "00AABBCC"  # config/demo.toml's scope that leaves the disinfectant too early
OUTAGE_AFTER, OUTAGE_FOR = 35.0, 20.0  # the Zhejiang platform's outage, seconds after start
STUDY_AFTER = 5.0
_LOCAL_URL = re.compile(r"^(?P<head>\w+://(?:127\.0\.0\.1|localhost)):(?P<port>\d+)")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `edge-agent demo` was asked for."""

    state_dir: Path = DEFAULT_STATE_DIR
    fresh: bool = False
    port_offset: int = 0
    speed: float = 1.0


def prepare(options: DemoOptions) -> tuple[Path, list[tuple[float, str]]]:
    """Write `<state-dir>/demo.toml`; return its path and the timeline to print."""
    if not BASE.is_file():
        raise AgentError(f"{BASE}: the demo's base config is missing (run from a source checkout)")
    state_dir = options.state_dir.resolve()
    if (state_dir / "agent.lock").exists():
        with StateDirLock(state_dir):  # StateDirLockedError while a demo runs on it
            pass  # change nothing of a running demo's
    if options.fresh:
        _clear(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "washer-export").mkdir(exist_ok=True)
    public_key = _key_pair(state_dir / PRIVATE_KEY)
    base = tomllib.loads(BASE.read_text(encoding="utf-8"))
    data = demo_config(base, state_dir, public_key, options.speed)
    timeline = _timeline(data, options.speed)
    data = moved_ports(data, options.port_offset)
    path = state_dir / "demo.toml"
    header = f"# Written by `edge-agent demo` from {BASE}: edit that file, not this one.\n\n"
    path.write_text(header + toml_out.dumps(data), encoding="utf-8", newline="\n")
    return path, timeline


def _clear(state_dir: Path) -> None:
    """Remove a previous demo's state; refuse a directory that does not look like one."""
    if not state_dir.exists():
        return
    known = {"demo.toml", "journal.db", "agent.lock"}
    if any(state_dir.iterdir()) and not any((state_dir / name).exists() for name in known):
        raise AgentError(f"{state_dir}: not a demo state directory; --fresh would delete it")
    shutil.rmtree(state_dir)


def _key_pair(path: Path) -> str:
    """The city simulator's RSA key (kept in `path`, mode 0600); return its public half."""
    with contextlib.suppress(OSError, ValueError, IndexError, TypeError):
        return str(
            RSA.import_key(path.read_text(encoding="ascii")).public_key().export_key().decode()
        )
    key = RSA.generate(2048)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key.export_key())
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return str(key.public_key().export_key().decode())


def demo_config(
    base: dict[str, Any], state_dir: Path, public_key: str, speed: float
) -> dict[str, Any]:
    """config/demo.toml (parsed) plus imaging, a washer, a third scope, an outage, the traffic."""
    data = copy.deepcopy(base)
    data["agent"]["state_dir"] = str(state_dir)
    _endoscopy(data, state_dir, speed)
    _imaging(data, state_dir, public_key, speed)
    token = data["api"]["token"]
    data["simulators"]["demo_traffic"] = {
        "type": "demo_traffic",
        "api_url": f"http://127.0.0.1:{data['api']['port']}",
        "api_token": token,
        "scp_port": data["sources"]["pacs_in"]["port"],
        "calling_ae_title": "DEMO_CT",
        "study_after": STUDY_AFTER,
        "repeat_every": 300.0,
        "washer_folder": str(state_dir / "washer-export"),
        "washer_id": WASHER,
        "washer_scope": WASHER_SCOPE,
        "speed": speed,
    }
    return data


def _endoscopy(data: dict[str, Any], state_dir: Path, speed: float) -> None:
    endoscopy = data["domains"]["endoscopy"]
    endoscopy["endoscopes"].append(
        {"number": WASHER_SCOPE, "rfid": WASHER_TAG, "type_name": "胃镜", "brand": "Olympus"}
        | {"system": "digestive"}
    )
    endoscopy["stations"].append(
        {"reader": "machine_wash", "step_id": 10, "name": "机洗", "order": 5}
        | {"kind": "machine_wash", "washer": WASHER, "ratio_number": "OPA-2611-02"}
    )
    endoscopy["washers"] = [{"id": WASHER, "system": "digestive"}]
    rules = endoscopy.setdefault("rules", {})
    rules["contact_minutes"] = {k: v / speed for k, v in rules.get("contact_minutes", {}).items()}
    if "final_rinse_minutes" in rules:
        rules["final_rinse_minutes"] /= speed
    readers = data["simulators"]["station_readers"]
    readers["readers"].append({"name": "machine_wash", "port": 9110, "protocol": "rdm6300"})
    data["sources"]["machine_wash"] = {
        "type": "rfid_reader",
        "url": "tcp://127.0.0.1:9110",
        "protocol": "rdm6300",
    }
    script: list[dict[str, Any]] = readers["script"]
    # The third scope is cleaned by hand, goes into the washer early in the script, and reaches
    # its cabinet late in it, well after the programme's receipt joined its cycle.
    washed = [
        {"reader": reader, "tag": WASHER_TAG, "after": 2.0}
        for reader in ("bedside", "leak_test", "enzyme", "rinse", "machine_wash")
    ]
    script[1:1] = washed
    dried = [n for n, t in enumerate(script) if t["reader"] == "dry" and t["tag"] == BLOCKED_TAG]
    at = dried[0] + 1 if dried else len(script)
    script.insert(at, {"reader": "cabinet", "tag": WASHER_TAG, "after": 2.0})
    for tap in script:
        tap["after"] = tap.get("after", 2.0) / speed
    data["sources"]["aer"] = {
        "type": "washer_folder",
        "path": str(state_dir / "washer-export"),
        "format": "thermal_cn",
        "settle": 0.5,  # the washer renames a finished file into place
    }
    zhejiang = data["simulators"]["zhejiang_platform"]
    zhejiang["outage_after"] = OUTAGE_AFTER / speed
    zhejiang["outage_for"] = OUTAGE_FOR / speed
    zhejiang["control_port"] = 8890  # docs/simulators.md
    uplink = data["uplinks"]["zhejiang_endoscope"]
    # Retry and re-probe soon, so the recovery shows within seconds of the platform's return.
    uplink |= {"retry_base": 0.5 / speed, "retry_cap": 5.0 / speed}
    uplink["breaker_open_seconds"] = 5.0 / speed


def _imaging(data: dict[str, Any], state_dir: Path, public_key: str, speed: float) -> None:
    data["simulators"]["city_imaging"] = {
        "type": "remote_imaging",
        "port": 8791,
        "dicom_port": 11113,
        "control_port": 8891,  # docs/simulators.md
        "license": "simulator-license",
        "private_key": f"file:{state_dir / PRIVATE_KEY}",
    }
    data["uplinks"]["city_imaging"] = {
        "type": "remote_imaging",
        "base_url": "http://127.0.0.1:8791/openapi",
        "app_id": "edge-agent",
        "org_id": "0001",
        "license": "simulator-license",
        "public_key": public_key,  # inline: the demo's own simulator key, not a platform's
        "hospital_code": "330100001",
        "hospital_name": "演示县人民医院",
        "dicom_host": "127.0.0.1",
        "dicom_port": 11113,
        "called_ae_title": "CITYPACS",
        "retry_base": 0.5 / speed,
        "retry_cap": 10.0 / speed,
    }
    data["sources"]["pacs_in"] = {
        "type": "dicom_scp",
        "ae_title": "EDGE_AGENT",
        "host": "127.0.0.1",
        "port": 11112,
        "allowed_calling_aes": ["DEMO_CT"],
        "min_free_mb": 64,
    }
    data["domains"]["imaging"] = {
        "type": "imaging",
        "quiet_seconds": 3.0 / speed,
        "scan_interval": 1.0 / speed,
        "forward_to": ["city_imaging"],
    }


def moved_ports(data: Any, offset: int, key: str = "") -> Any:
    """`data` with every local port moved by `offset`: `port`, `*_port` and 127.0.0.1 URLs."""
    if isinstance(data, dict):
        return {k: moved_ports(v, offset, k) for k, v in data.items()}
    if isinstance(data, list):
        return [moved_ports(v, offset, key) for v in data]
    if (
        isinstance(data, int)
        and not isinstance(data, bool)
        and (key == "port" or key.endswith("_port"))
    ):
        return data + offset
    if isinstance(data, str):
        return _LOCAL_URL.sub(lambda m: f"{m['head']}:{int(m['port']) + offset}", data)
    return data


def _timeline(data: dict[str, Any], speed: float) -> list[tuple[float, str]]:
    """(seconds after start, what happens) for the banner, from the script and the settings."""
    at, taps = 0.0, []
    for tap in data["simulators"]["station_readers"]["script"]:
        at += tap["after"]
        taps.append((at, tap["reader"], tap["tag"]))

    def when(reader: str, tag: str) -> float | None:
        return next((t for t, r, g in taps if r == reader and g == tag), None)

    into_washer = when("machine_wash", WASHER_TAG)
    events = [
        (STUDY_AFTER / speed, "a CT study arrives by C-STORE, then its report: → city platform"),
        ((when("bedside", WASHER_TAG) or 0.0), f"{WASHER_SCOPE} is cleaned by hand"),
        (OUTAGE_AFTER / speed, "the Zhejiang platform goes down (HTTP 503): breaker opens"),
        ((OUTAGE_AFTER + OUTAGE_FOR) / speed, "the Zhejiang platform is back: queue drains"),
    ]
    if into_washer is not None:
        events.append((into_washer, f"{WASHER_SCOPE} goes into washer {WASHER}"))
        done = into_washer + sum(programme_seconds(speed))
        events.append((done, f"{WASHER} prints its receipt; it joins the cycle"))
    leaves = when("final_rinse", BLOCKED_TAG)
    if leaves is not None:
        events.append((leaves, "a scope leaves the disinfectant too early: blocked"))
    uses = [t for t, r, g in taps if r == "room_1" and g == BLOCKED_TAG]
    if uses:
        events.append((uses[-1], "the blocked scope is used: critical alert"))
    return sorted(events)


def banner(config: Config, timeline: list[tuple[float, str]], path: Path) -> str:
    """What the demo prints at start: where to look, the token, what happens when, how to stop."""
    url = f"http://{config.api.host}:{config.api.port}/"
    assert config.api.token is not None
    lines = [
        "edge-agent demo: a simulated endoscopy centre, imaging department and clouds",
        f"  dashboard: {url}",
        f"  token:     {config.api.token.get_secret_value()}   (log in to act on alerts)",
        f"  config:    {path}",
        *_controls(config),
        "  timeline (seconds after start):",
        *(f"    {math.floor(t):>4}  {text}" for t, text in timeline),
        "  then the readers' script repeats, and a new study comes every few minutes.",
        "  stop: Ctrl-C",
        "",
    ]
    return "\n".join(lines)


def _controls(config: Config) -> list[str]:
    """One banner line per simulated platform with a control API."""
    lines = []
    for name, section in config.simulators.items():
        port = getattr(section, "control_port", None)
        if port is not None and section.enabled:
            host = getattr(section, "control_host", "127.0.0.1")
            lines.append(f"  platform:  {name} control API http://{host}:{port}/_sim")
    if lines:
        lines.append("             (go down, fault switches, what it received: docs/simulators.md)")
    return lines


async def run(config: Config, *, open_browser: bool = False) -> None:
    """Run the agent on the demo config; open the dashboard once it answers, if asked."""
    daemon = Agent(config)
    opener = None
    if open_browser:
        url = f"http://{config.api.host}:{config.api.port}/"
        opener = asyncio.create_task(_open_when_up(url))
    try:
        await daemon.run()
    finally:
        if opener is not None:
            opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opener


async def _open_when_up(url: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}healthz"):
                    break
            await asyncio.sleep(0.5)
    if not await asyncio.to_thread(webbrowser.open, url):
        print(f"edge-agent: no browser could be opened here; open {url} yourself", flush=True)
