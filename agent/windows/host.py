"""The service's logic, free of pywin32: load the config, run the Agent in the service thread,
report start/running/stopping, and take a stop request from the SCM's thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import structlog

from agent.config import Config
from agent.errors import AgentError, ConfigError
from agent.sdnotify import Notifier

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
START_HINT = 30.0  # seconds the SCM waits between two START_PENDING check-points
PULSE = 5.0  # seconds between check-points while starting or stopping
CLOSE_MARGIN = 20.0  # beyond agent.shutdown_timeout: cancelling loops, closing the journal
DEFAULT_SHUTDOWN_TIMEOUT = 10.0  # until the config is read


class State(Enum):
    """The service states this host reports; STOPPED is pythonservice.exe's to report."""

    START_PENDING = "start_pending"
    RUNNING = "running"
    STOP_PENDING = "stop_pending"


class EventLog(Protocol):
    """The Windows Application event log (servicemanager.LogInfoMsg / LogErrorMsg)."""

    def info(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


Report = Callable[[State, int], None]  # state, wait hint in milliseconds
AgentFactory = Callable[[Config, Notifier], Any]  # an object with async run() and request_stop()


class ServiceNotifier(Notifier):
    """The Agent's notifier under the SCM: READY=1 and STOPPING=1 become service states."""

    def __init__(self, on_ready: Callable[[], None], on_stopping: Callable[[], None]) -> None:
        super().__init__(environ={})  # no $NOTIFY_SOCKET, hence no watchdog either
        self._on_ready = on_ready
        self._on_stopping = on_stopping

    def notify(self, *states: str) -> None:
        """Pass READY=1 and STOPPING=1 on; ignore the rest (STATUS=, WATCHDOG=1)."""
        if "READY=1" in states:
            self._on_ready()
        if "STOPPING=1" in states:
            self._on_stopping()


def _default_agent(config: Config, notifier: Notifier) -> Any:
    from agent.runtime import Agent

    return Agent(config, notifier)


def _default_logging(config: Config) -> None:
    from agent.windows.logfile import configure_service_logging

    configure_service_logging(config.log.level, config.secrets(), config.log)


class ServiceHost:
    """Runs one Agent for the service thread; `stop()` may be called from any thread."""

    def __init__(
        self,
        config_path: Path,
        report: Report,
        event_log: EventLog,
        *,
        load: Callable[[Path], Config] | None = None,
        setup_logging: Callable[[Config], None] = _default_logging,
        make_agent: AgentFactory = _default_agent,
        pulse: float = PULSE,
    ) -> None:
        self.config_path = config_path
        self._report = report
        self._event_log = event_log
        self._load = load
        self._setup_logging = setup_logging
        self._make_agent = make_agent
        self._pulse = pulse
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._agent: Any = None
        self._stop_requested = False
        self._state = State.START_PENDING
        self._shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT

    @property
    def stop_hint_ms(self) -> int:
        """How long the SCM should wait for the stop: shutdown_timeout plus closing."""
        return int((self._shutdown_timeout + CLOSE_MARGIN) * 1000)

    def run(self) -> int:
        """Load, run until stopped; return 0, 1 (the agent failed) or 2 (the config is bad)."""
        try:
            config = self._load_config()
        except ConfigError as err:
            self._event_log.error(
                "edge-agent cannot start: the config has problems:\n" + "\n".join(err.problems)
            )
            return EXIT_CONFIG
        self._shutdown_timeout = config.agent.shutdown_timeout
        try:
            self._setup_logging(config)
        except OSError as err:
            self._event_log.error(f"edge-agent cannot start: cannot open its log file: {err}")
            return EXIT_FAILURE
        from agent.event_loop import new_event_loop

        loop = new_event_loop()
        _without_signal_handlers(loop)
        try:
            return loop.run_until_complete(self._run(config, loop))
        finally:
            with self._lock:
                self._loop = self._agent = None
            loop.close()

    def stop(self) -> None:
        """The SCM's stop (or shutdown) control: report STOP_PENDING and stop the agent."""
        with self._lock:
            self._stop_requested = True
            loop, agent = self._loop, self._agent
        self._set_state(State.STOP_PENDING)
        if loop is not None and agent is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: it has stopped
                loop.call_soon_threadsafe(agent.request_stop)

    def _load_config(self) -> Config:
        if self._load is not None:
            return self._load(self.config_path)
        from agent.config import load_config
        from agent.plugins import PLUGIN_KINDS

        return load_config(self.config_path, PLUGIN_KINDS)

    async def _run(self, config: Config, loop: asyncio.AbstractEventLoop) -> int:
        agent = self._make_agent(config, ServiceNotifier(self._ready, self._stopping))
        with self._lock:
            self._loop, self._agent = loop, agent
            stop_now = self._stop_requested
        if stop_now:  # the SCM asked before there was an agent to ask
            agent.request_stop()
        pulse = asyncio.create_task(self._checkpoints(), name="service-checkpoints")
        try:
            await agent.run()
        except (AgentError, OSError) as err:  # e.g. the journal unreadable, a port in use
            log.error("agent.failed", error=str(err))
            self._event_log.error(f"edge-agent stopped: {err}")
            return EXIT_FAILURE
        except Exception as err:  # the service thread's boundary: say why, then stop
            log.exception("agent.crashed")
            self._event_log.error(
                f"edge-agent crashed: {err!r}\n" + "".join(traceback.format_exception(err))
            )
            return EXIT_FAILURE
        finally:
            pulse.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pulse
        return EXIT_OK

    async def _checkpoints(self) -> None:
        """Re-report a pending state so the SCM sees progress (each report is a check-point)."""
        while True:
            await asyncio.sleep(self._pulse)
            with self._lock:
                state = self._state
            if state is not State.RUNNING:
                self._report(state, self._hint(state))

    def _ready(self) -> None:
        with self._lock:
            if self._stop_requested:  # stopping already: RUNNING would be a lie
                return
        self._set_state(State.RUNNING)
        self._event_log.info(f"edge-agent started with {self.config_path}")

    def _stopping(self) -> None:
        self._set_state(State.STOP_PENDING)

    def _set_state(self, state: State) -> None:
        with self._lock:
            if self._state is state and state is State.STOP_PENDING:
                return  # SvcStop and then the agent's STOPPING=1: one report
            self._state = state
        self._report(state, self._hint(state))

    def _hint(self, state: State) -> int:
        if state is State.STOP_PENDING:
            return self.stop_hint_ms
        return int(START_HINT * 1000) if state is State.START_PENDING else 0


def _without_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """The SCM, not a signal, stops a service; and asyncio cannot install signal handlers off
    the main thread (nor at all on Windows' proactor loop), so Agent.run's calls become no-ops."""

    def ignore(*args: object, **kwargs: object) -> bool:
        return False

    setattr(loop, "add_signal_handler", ignore)  # noqa: B010
    setattr(loop, "remove_signal_handler", ignore)  # noqa: B010
