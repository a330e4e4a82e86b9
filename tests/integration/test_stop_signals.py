"""Ctrl+C stops the agent gracefully where the event loop cannot handle signals (Windows'
proactor loop has no add_signal_handler): checked here on Linux through that same path."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from agent.config import load_config
from agent.plugins import PLUGIN_KINDS
from agent.runtime import Agent, StateDirLock
from agent.sdnotify import Notifier


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__({})
        self.ready = asyncio.Event()
        self.states: list[str] = []

    def notify(self, *states: str) -> None:
        self.states.extend(states)
        if "READY=1" in states:
            self.ready.set()


@pytest.fixture
def proactor_like(monkeypatch: pytest.MonkeyPatch) -> None:
    """The running loop refuses signal handlers, as Windows' proactor loop does."""

    def unsupported(*args: object) -> bool:
        raise NotImplementedError

    loop_type = type(asyncio.get_event_loop_policy().get_event_loop())
    monkeypatch.setattr(loop_type, "add_signal_handler", unsupported)
    monkeypatch.setattr(loop_type, "remove_signal_handler", unsupported)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
async def test_ctrl_c_stops_the_agent_without_loop_signal_handlers(
    tmp_path: Path, proactor_like: None, signum: str
):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstate_dir = "state"\n', encoding="utf-8", newline="\n")
    config = load_config(path, PLUGIN_KINDS)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    notifier = Recorder()
    running = asyncio.create_task(Agent(config, notifier).run())
    async with asyncio.timeout(30):
        await notifier.ready.wait()
        signal.raise_signal(getattr(signal, signum))  # what Ctrl+C does (Ctrl+Break: SIGBREAK)
        await running  # returns: a graceful stop, not a KeyboardInterrupt
    assert notifier.states[-1] == "STOPPING=1"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with StateDirLock(config.agent.state_dir):  # the lock was released
        pass
