"""Run components forever: restart on crash with backoff; log down once and recovered once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum

import structlog

from agent.config import SupervisorSection

log = structlog.get_logger(__name__)


class ComponentState(StrEnum):
    """What the supervisor knows about a component."""

    RUNNING = "running"
    DOWN = "down"
    FINISHED = "finished"


class Supervisor:
    """Owns the tasks of drivers and delivery loops; none of them can take the daemon down."""

    def __init__(self, settings: SupervisorSection) -> None:
        self.settings = settings
        self.states: dict[str, ComponentState] = {}
        self.stopping = False  # components ending now are being stopped, not finishing
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` as component `name`, restarting it whenever it raises."""
        self.states[name] = ComponentState.RUNNING
        self._tasks[name] = asyncio.create_task(self._supervise(name, run), name=name)

    async def stop(self, names: list[str] | None = None) -> None:
        """Cancel the given components (all by default) and wait for them."""
        tasks = [t for n, t in self._tasks.items() if names is None or n in names]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        delay = settings.restart_initial
        recovered: asyncio.TimerHandle | None = None
        while True:
            started = loop.time()
            if self.states[name] is ComponentState.DOWN:
                recovered = loop.call_later(settings.stable_after, self._recovered, name)
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # task boundary: a component crash must not stop the agent
                if recovered is not None:
                    recovered.cancel()
                if loop.time() - started >= settings.stable_after:
                    delay = settings.restart_initial  # it had been healthy: a new outage
                if self.states[name] is not ComponentState.DOWN:
                    self.states[name] = ComponentState.DOWN
                    log.error(
                        "component.down",
                        component=name,
                        error=f"{type(err).__name__}: {err}",
                        restart_in=delay,
                        exc_info=err,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.restart_max)
                continue
            if recovered is not None:
                recovered.cancel()
            self.states[name] = ComponentState.FINISHED
            if not self.stopping:
                log.info("component.finished", component=name)
            return

    def _recovered(self, name: str) -> None:
        if self.states.get(name) is ComponentState.DOWN:
            self.states[name] = ComponentState.RUNNING
            log.info("component.recovered", component=name)
