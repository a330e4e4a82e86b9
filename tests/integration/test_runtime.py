"""The daemon as systemd runs it: READY/WATCHDOG/STOPPING, bounded graceful stop, one per dir."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.cli import main
from agent.config import load_config
from agent.errors import AgentError
from agent.events import Event
from agent.journal import failures
from agent.journal.alerts import open_alerts
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent, check_owner
from agent.sdnotify import Notifier
from agent.simulators.http_cloud import HttpCloud
from tests.agent_process import AgentProcess
from tests.helpers import eventually


def write_config(tmp_path: Path, cloud: HttpCloud, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
state_dir = "state"
shutdown_timeout = 1.0
[log]
format = "json"
[sources.sensor]
type = "synthetic"
rate = 0
count = 5
producers = 2  # two order keys, so two sends can be in flight
[uplinks.cloud]
type = "http"
url = "{cloud.url}/ingest"
token_url = "{cloud.url}/token"
client_id = "agent"
client_secret = "s3cret-cloud-key"
forward = ["synthetic.*"]
{extra}
""",
        encoding="utf-8",
    )
    return path


async def test_ready_watchdog_and_stopping_reach_notify_socket(tmp_path, cloud):
    agent = AgentProcess(write_config(tmp_path, cloud), tmp_path, env={"WATCHDOG_USEC": "200000"})
    await agent.start()
    await agent.wait_for_notification("WATCHDOG=1", timeout=10)
    agent.proc.terminate()  # type: ignore[union-attr]
    await agent.wait_for_notification("STOPPING=1", timeout=10)
    assert await agent.stop() == 0
    assert agent.notifications.index("READY=1") < agent.notifications.index("STOPPING=1")


async def test_sigterm_stops_within_bound_and_releases_hung_sends(tmp_path, cloud):
    cloud.faults.delay = 3600.0  # the platform never answers
    agent = AgentProcess(write_config(tmp_path, cloud, "concurrency = 2"), tmp_path)
    await agent.start()
    db = tmp_path / "state" / "journal.db"

    def queued_and_inflight() -> tuple[int, int]:
        with sqlite3.connect(db) as conn:
            total, inflight = conn.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'inflight') FROM outbox"
            ).fetchone()
            return int(total), int(inflight)

    # Every event produced (a loaded machine may still be producing when two are in flight).
    async with asyncio.timeout(10):
        while queued_and_inflight() != (10, 2):
            await asyncio.sleep(0.02)
    started = time.monotonic()
    assert await agent.stop(timeout=10) == 0
    assert time.monotonic() - started < 5  # shutdown_timeout 1 s plus closing
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT state, attempts FROM outbox").fetchall()
    # The hung sends were released unsent: pending again, the attempt not counted.
    assert len(rows) == 10 and all(row == ("pending", 0) for row in rows)
    output = await agent.output()
    assert '"dispatch.released"' in output


async def test_second_agent_on_same_state_dir_is_refused(tmp_path, cloud):
    config = write_config(tmp_path, cloud)
    first = AgentProcess(config, tmp_path)
    await first.start()
    second = AgentProcess(config, tmp_path)
    try:
        await second.start(timeout=20)
        raise AssertionError("second agent started")
    except AssertionError as err:
        assert "another edge-agent is running" in str(err)
    assert second.proc is not None and second.proc.returncode == 1
    assert await first.stop() == 0


async def test_an_api_port_in_use_is_named_with_the_fix(tmp_path, cloud):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = f'[api]\nenabled = true\nport = {port}\ntoken = "runtime-token-0123456789"\n'
        config = load_config(write_config(tmp_path, cloud, api), PLUGIN_KINDS)
        with pytest.raises(AgentError) as refused:
            await Agent(config, ReadyNotifier()).run()
    assert str(refused.value).startswith(
        f"[api] port: cannot listen: 127.0.0.1:{port} is already in use by another program"
    )
    assert f"ss -ltnp 'sport = :{port}'" in str(refused.value)


def test_files_left_by_a_run_as_another_user_are_named_with_the_fix(tmp_path):
    """A trial `edge-agent run` as root, then the service as edge-agent: not a bare EACCES."""
    if sys.platform == "win32":
        pytest.skip("owners and modes: POSIX (check_owner does nothing on Windows)")
    state = Path(tempfile.mkdtemp(prefix="edge-state-"))  # reachable by every user, unlike tmp_path
    try:
        state.chmod(0o777)
        (state / "journal.db").write_bytes(b"")
        (state / "journal.db").chmod(0o600 if os.geteuid() == 0 else 0o400)
        message = _check_owner_as_service_user(state)
    finally:
        shutil.rmtree(state)
    assert message.startswith(f"{state / 'journal.db'}: belongs to ")
    assert "chown -R " in message and str(state) in message


def _check_owner_as_service_user(state: Path) -> str:
    """check_owner's refusal as seen by another user (nobody, when the test runs as root)."""
    if sys.platform == "win32":
        raise NotImplementedError
    if os.geteuid() != 0:
        with pytest.raises(AgentError) as refused:
            check_owner(state)
        return str(refused.value)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: it never returns
        os.close(reader)
        message = "no refusal"
        try:
            os.setgid(65534)
            os.setuid(65534)
            check_owner(state)
        except AgentError as err:
            message = str(err)
        finally:
            os.write(writer, message.encode())
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        message = answer.read().decode()
    os.waitpid(child, 0)
    return message


async def test_status_reads_the_journal_while_the_daemon_runs(tmp_path, cloud):
    cloud.faults.delay = 3600.0  # keep messages undelivered so there is something to see
    config = write_config(tmp_path, cloud)
    agent = AgentProcess(config, tmp_path)
    await agent.start()

    async def status() -> dict[str, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "status",
            "--json",
            "-c",
            str(config),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        (row,) = json.loads(out)["uplinks"]
        assert row["uplink"] == "cloud"
        return row  # type: ignore[no-any-return]

    async with asyncio.timeout(30):  # the producers may still be running: wait for all ten
        while (row := await status())["pending"] + row["inflight"] < 10:
            pass
    assert row["delivered"] == 0 and row["inflight"] >= 1
    assert await agent.stop() == 0


class ReadyNotifier(Notifier):
    """Tells the test when the in-process agent said READY=1."""

    def __init__(self) -> None:
        super().__init__({})
        self.ready = asyncio.Event()

    def notify(self, *states: str) -> None:
        if "READY=1" in states:
            self.ready.set()


async def test_a_handler_failure_is_alerted_and_replayed_when_an_operator_asks(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstate_dir = "state"\n', encoding="utf-8")
    notifier = ReadyNotifier()
    agent = Agent(load_config(path, PLUGIN_KINDS), notifier)
    running = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            await notifier.ready.wait()
        # Accepted, but its handler cannot take it: the event stays, and it is loud.
        broken = Event("alert.acknowledge", "api", {"alert_id": "none", "by": "李"})
        with capture_logs() as logs:
            assert await agent.emit(broken)
            assert agent.journal is not None
            alerts = await agent.journal.run(open_alerts)
            assert [(a["code"], a["severity"]) for a in alerts] == [("handler_failed", "error")]

            assert main(["handlers", "replay", "--all", "-c", str(path)]) == 0
            journal = agent.journal

            async def tried_twice() -> bool:
                found = await journal.run(failures.listing)
                return found[0].attempts == 2

            await eventually(tried_twice)  # the running agent replayed it, and it failed again
        failed = [e for e in logs if e["event"] == "journal.replay_failed"]
        assert failed == [
            {"event": "journal.replay_failed", "failure_id": 1, "error": "ValueError",
             "log_level": "error"}
        ]  # fmt: skip
    finally:
        agent.request_stop()
        await running
