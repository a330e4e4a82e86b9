"""Start and stop the agent: journal, simulators, delivery loops, drivers, signals, sd_notify."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web

from agent import __version__
from agent.config import Config, PluginSection, UplinkSection
from agent.dispatch.dispatcher import Dispatcher, DispatchSettings
from agent.dispatch.policy import Backoff
from agent.endpoints import RouteDef
from agent.errors import AgentError, JournalClosedError, JournalError, StateDirLockedError
from agent.event_loop import handle_stop_signals
from agent.events import Event
from agent.imaging.config import ImagingConfig
from agent.imaging.index_retention import index_purges as imaging_index_purges
from agent.imaging.index_retention import purges as imaging_purges
from agent.journal import alerts, outbox, retention
from agent.journal.publish import publish, set_publish_routes
from agent.journal.readers import Readers
from agent.journal.writer import Journal
from agent.lab.config import LabConfig
from agent.lab.retention import purges as lab_purges
from agent.observe import (
    DiskState,
    ListenerState,
    QueueState,
    Snapshot,
    SourceState,
    alert_counts,
    disk_pressure,
    free_bytes,
    outbox_counts,
)
from agent.plugins import DOMAINS, SIMULATORS, SOURCES, UPLINKS, Plugin
from agent.reprocessing.config import ReprocessingConfig
from agent.reprocessing.lookback import LookbackAudit
from agent.reprocessing.retention import purges as reprocessing_purges
from agent.sdnotify import Notifier
from agent.supervisor import Supervisor
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import launcher as insurance_launcher
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig
from agent.uplinks.provincial_imaging.orders import order_purges
from agent.uplinks.remote_imaging import jiwei, viewer
from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.results_sharing.queries import queries as sharing_queries
from agent.uplinks.results_sharing.retention import purges as sharing_purges
from agent.vocabulary.spool import SpoolLayout
from agent.web.api import make_app
from agent.web.dashboard.routes import add_dashboard_routes
from agent.web.guard import runner_options, start_site
from agent.web.listener import ListenerCounters, start_listener
from agent.web.metrics import health
from drivers.base import Driver

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl
    import pwd

log = structlog.get_logger(__name__)
T = TypeVar("T")
PROBE_TIMEOUT = 5.0  # seconds: a journal that cannot answer a query in this is unhealthy
REPLAY_POLL = 2.0  # seconds: how soon `edge-agent handlers replay` is acted on


def dispatch_settings(section: UplinkSection) -> DispatchSettings:
    """Delivery settings of one uplink's config table."""
    return DispatchSettings(
        concurrency=section.concurrency,
        send_timeout=section.send_timeout,
        backoff=Backoff(section.retry_base, section.retry_cap),
        breaker_threshold=section.breaker_threshold,
        breaker_open_seconds=section.breaker_open_seconds,
        dead_letter_blocks_key=section.dead_letter_blocks_key,
        send_run=section.send_run,
        unreadable_attempts=section.unreadable_answer_attempts,
    )


def build(registry: Mapping[str, Plugin], name: str, section: PluginSection) -> Any:
    """Make the component a config table describes."""
    factory = registry[section.type].build
    assert factory is not None, f"{section.type} builds no component"
    return factory(name, section)


class StateDirLock:
    """An exclusive lock on the state directory: one agent per journal."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "agent.lock"
        self._fd: int | None = None

    def __enter__(self) -> StateDirLock:
        check_owner(self.path.parent)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOINHERIT", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            _lock_exclusive(fd)
        except OSError as err:
            os.close(fd)
            if err.errno not in {errno.EAGAIN, errno.EACCES, errno.EDEADLK}:
                raise
            raise StateDirLockedError(
                f"{self.path.parent}: another edge-agent is running on this state directory"
            ) from err
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# What the agent writes at the top of its state directory (the spool's own folders below).
STATE_ENTRIES = ("agent.lock", "journal.db", "journal.db-wal", "journal.db-shm", "spool")


def check_owner(state_dir: Path) -> None:
    """AgentError saying what to run when this user cannot write what an earlier run of the
    agent as another user (root, trying it out) left in `state_dir`; systemd re-owns only the
    directory itself, so the service would otherwise fail with a bare EACCES."""
    if sys.platform == "win32":
        return
    for name in STATE_ENTRIES:
        path = state_dir / name
        if path.exists() and not os.access(path, os.W_OK):
            user, owner = _user_name(os.geteuid()), _user_name(path.stat().st_uid)
            raise AgentError(
                f"{path}: belongs to {owner} and {user}, who runs the agent, cannot write it"
                f" (was the agent run as {owner}?); as root run: chown -R {user}: {state_dir}"
            )


def _user_name(uid: int) -> str:
    if sys.platform != "win32":  # no passwd database there
        with contextlib.suppress(KeyError):  # a uid without a passwd entry (containers)
            return pwd.getpwuid(uid).pw_name
    return str(uid)


def _lock_exclusive(fd: int) -> None:
    """Lock `fd` without waiting; OSError (EAGAIN/EACCES/EDEADLK) if another process holds it."""
    if sys.platform == "win32":
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte, released when fd closes
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class Agent:
    """The daemon: one asyncio process, every component supervised."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.supervisor = Supervisor(config.supervisor)
        self.dispatchers: dict[str, Dispatcher] = {}
        self._uplinks: dict[str, Any] = {}  # built uplinks, for routes that need one
        self.journal: Journal | None = None
        self.readers: Readers | None = None  # the journal's read-only side (pages, probes)
        self._stop = asyncio.Event()
        self._simulators: list[Any] = []
        self._background: list[asyncio.Task[None]] = []
        self._api: web.AppRunner | None = None
        self._listeners: list[web.AppRunner] = []
        self.listener_counters: dict[str, ListenerCounters] = {}
        self.sources: dict[str, tuple[str, Driver]] = {}

    @property
    def state_dir(self) -> Path:
        """The state directory: the journal, quarantine and spool folders."""
        return self.config.agent.state_dir

    async def observe(self) -> Snapshot:
        """The agent as /metrics and /healthz show it: counts read off the writer (a scrape never
        waits behind commits), and the writer unhealthy when a commit has run too long."""
        counts: dict[str, dict[str, int]] = {}
        oldest: dict[str, float] = {}
        alerts: dict[str, int] = {}
        pressure: tuple[str, int, int] | None = None
        error = ""
        try:
            assert self.journal is not None and self.readers is not None, "journal not open"
            if self.journal.closed:
                raise JournalClosedError(f"{self.journal.path}: journal is closed")
            async with asyncio.timeout(PROBE_TIMEOUT):
                counts, oldest = await self.readers.run(outbox_counts)
                alerts = await self.readers.run(alert_counts)
                pressure = await self.readers.run(disk_pressure)
            stalled = self.journal.busy_for()
            if stalled > PROBE_TIMEOUT:
                error = f"JournalStalled: the journal writer is in one commit for {stalled:.0f} s"
        except (AssertionError, TimeoutError, AgentError, sqlite3.Error) as err:
            error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        now = time.time()
        queues = [
            QueueState(
                uplink=name,
                counts=counts.get(name, {}),
                oldest_pending_age=now - oldest[name] if name in oldest else None,
                breaker=str(d.breaker.state),
                delivered_total=d.counters.delivered,
                retried_total=d.counters.retried,
                dead_total=d.counters.dead,
            )
            for name, d in sorted(self.dispatchers.items())
        ]
        sources = [
            SourceState(
                name=name,
                type=kind,
                component=str(self.supervisor.states.get(f"source:{name}", "stopped")),
                online=driver.is_online(),
                counters=driver.stats(),
                detail=driver.link_detail(),
            )
            for name, (kind, driver) in sorted(self.sources.items())
        ]
        commits = self.journal.commits if self.journal is not None else 0
        listeners = [
            ListenerState(name, c.requests, dict(c.refused))
            for name, c in sorted(self.listener_counters.items())
        ]
        disk = None
        if pressure is not None:
            free = await asyncio.to_thread(free_bytes, SpoolLayout.of(self.state_dir).root)
            disk = DiskState(free, *pressure)
        return Snapshot(not error, error, queues, sources, alerts, commits, listeners, disk)

    def request_stop(self) -> None:
        """Begin a graceful stop (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A domain task's read (or small write) on the journal, in its writer thread."""
        assert self.journal is not None
        return await self.journal.run(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A domain task's read on a read-only connection: never waits behind the writer."""
        assert self.readers is not None
        return await self.readers.run(fn)

    async def emit(self, event: Event) -> bool:
        """The drivers' `ctx.emit`: journal the event; returns only after the commit."""
        assert self.journal is not None
        return (await self.journal.ingest([event]))[0]

    def emit_from_thread(self, event: Event, timeout: float) -> bool:
        """`emit` for a driver's own thread (the DICOM SCP): straight to the journal's writer."""
        assert self.journal is not None
        return self.journal.ingest_from_thread([event], timeout)[0]

    def submit_from_thread(self, event: Event) -> concurrent.futures.Future[list[bool]]:
        """Journal `event` from a driver's thread without waiting: the future answers the commit."""
        assert self.journal is not None
        return self.journal.submit_from_thread([event])

    async def run(self) -> None:
        """Run until asked to stop, then stop within `agent.shutdown_timeout` (plus closing)."""
        config = self.config
        with StateDirLock(config.agent.state_dir):
            restore_signals = handle_stop_signals(asyncio.get_running_loop(), self.request_stop)
            try:
                await self._start()
                self.notifier.notify("READY=1", f"STATUS=running {len(self.dispatchers)} uplinks")
                log.info(
                    "agent.started",
                    version=__version__,
                    state_dir=str(config.agent.state_dir),
                    uplinks=sorted(self.dispatchers),
                    sources=sorted(k for k, v in config.sources.items() if v.enabled),
                )
                await self._stop.wait()
            finally:
                self.notifier.notify("STOPPING=1")
                await self._shutdown()
                restore_signals()

    async def _start(self) -> None:
        config = self.config
        for name, section in config.simulators.items():
            if section.enabled:
                simulator = build(SIMULATORS, name, section)
                await simulator.start()
                self._simulators.append(simulator)
        handlers: list[Any] = [alerts.Acknowledgements(), LookbackAudit()]
        startup: list[Any] = []
        uplinks = {n: s for n, s in config.uplinks.items() if s.enabled}
        domains = {n: s for n, s in config.domains.items() if s.enabled}
        for registry, sections in ((UPLINKS, uplinks), (DOMAINS, domains)):
            for name, section in sections.items():
                plugin = registry[section.type]
                if plugin.handlers is not None:
                    handlers.extend(plugin.handlers(name, section))
                if plugin.startup is not None:
                    startup.extend(plugin.startup(name, section))
        journal = await Journal.open(
            config.database_path, handlers, max_batch=config.journal.max_batch
        )
        self.journal = journal
        self.readers = Readers(config.database_path)
        recovered = await journal.run(outbox.recover_inflight)
        if recovered:
            log.warning("outbox.leases_recovered", messages=recovered)
        routes = [n for n in config.alerts.publish_to if n in uplinks]
        await journal.run(partial(alerts.set_routes, uplinks=routes))
        followers = [n for n in config.status.publish_to if n in uplinks]
        await journal.run(
            partial(set_publish_routes, routes={"scope.state": followers, "health": followers})
        )
        for job in startup:
            await journal.run(job)
        api_routes: list[RouteDef] = []
        for name, section in uplinks.items():
            uplink = build(UPLINKS, name, section)
            self.dispatchers[name] = Dispatcher(journal, uplink, dispatch_settings(section))
            self._uplinks[name] = uplink
            make_routes = UPLINKS[section.type].api_routes
            if make_routes is not None:
                api_routes.extend(make_routes(name, section, uplink))
        journal.on_commit(self._wake_dispatchers)
        for name, dispatcher in self.dispatchers.items():
            self.supervisor.start(f"uplink:{name}", dispatcher.run)
        if config.api.enabled:
            app = make_app(
                config.api,
                self.emit,
                self.readers.run,
                photos_dir=config.agent.state_dir / "photos",
                exam_files_dir=config.agent.state_dir / "exam-files",
                qr_uplinks=[
                    name
                    for name, section in uplinks.items()
                    if isinstance(section, InsuranceImagingConfig) and section.qr.enabled
                ],
                viewer_launch=next(
                    (
                        insurance_launcher(section)
                        for section in uplinks.values()
                        if isinstance(section, InsuranceImagingConfig) and section.viewer.enabled
                    ),
                    None,
                ),
                apply_forms=next(
                    (
                        partial(jiwei.lookup, section.jiwei)
                        for section in uplinks.values()
                        if isinstance(section, RemoteImagingConfig) and section.jiwei.enabled
                    ),
                    None,
                ),
                report_viewer=next(
                    (
                        partial(viewer.viewer_url, section.report_viewer)
                        for section in uplinks.values()
                        if isinstance(section, RemoteImagingConfig)
                        and section.report_viewer.enabled
                    ),
                    None,
                ),
                observe=self.observe,
                reprocessing=[s for s in domains.values() if isinstance(s, ReprocessingConfig)],
                routes=api_routes,
                sharing_queries=next(
                    (
                        sharing_queries(name, section)
                        for name, section in uplinks.items()
                        if isinstance(section, ResultsSharingConfig)
                    ),
                    None,
                ),
            )
            if config.api.dashboard:
                assert config.api.token is not None  # required when enabled
                add_dashboard_routes(
                    app,
                    token=config.api.token,
                    observe=self.observe,
                    query=self.readers.run,
                    database=config.database_path,
                    read_only_open=config.api.dashboard_read_only_open,
                    reprocessing=[s for s in domains.values() if isinstance(s, ReprocessingConfig)],
                    session_hours=config.api.dashboard_session_hours,
                )
            self._api = web.AppRunner(app, **runner_options())
            await self._api.setup()
            await start_site(self._api, config.api.host, config.api.port, "[api] port")
        await self._start_listeners([(UPLINKS, uplinks), (DOMAINS, domains)])
        for name, section in config.sources.items():
            if section.enabled:
                driver = build(SOURCES, name, section)
                self.sources[name] = (section.type, driver)
                self.supervisor.start(f"source:{name}", partial(driver.run, self))
        self._start_tasks(DOMAINS, domains, "task")
        self._start_tasks(UPLINKS, uplinks, "uplink-task")
        self._background = [
            asyncio.create_task(self._purge_loop(), name="retention"),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self._watchdog_loop(), name="watchdog"),
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self._replay_loop(), name="replays"),
        ]

    def _start_tasks(
        self, registry: Mapping[str, Plugin], sections: Mapping[str, PluginSection], label: str
    ) -> None:
        """Supervise the background jobs of plugins (a domain's scheduler, an uplink's slots)."""
        for name, section in sections.items():
            make_tasks = registry[section.type].tasks
            for n, task in enumerate(make_tasks(name, section) if make_tasks else []):
                self.supervisor.start(f"source:{name}:{label}{n}", partial(task, self))

    async def _start_listeners(
        self, kinds: list[tuple[Mapping[str, Plugin], Mapping[str, PluginSection]]]
    ) -> None:
        """Serve the endpoints of every plugin whose listener is enabled, each on its own port."""
        for registry, sections in kinds:
            for name, section in sections.items():
                make_endpoints = registry[section.type].endpoints
                endpoints = make_endpoints(name, section) if make_endpoints else None
                with_uplink = registry[section.type].uplink_endpoints
                if with_uplink is not None and name in self._uplinks:
                    endpoints = with_uplink(name, section, self._uplinks[name])
                if endpoints is None or not endpoints.settings.enabled:
                    continue
                counters = self.listener_counters.setdefault(name, ListenerCounters())
                assert self.readers is not None  # platforms' queries are reads, off the writer
                self._listeners.append(
                    await start_listener(name, endpoints, self.emit, self.readers.run, counters)
                )

    def _wake_dispatchers(self, uplinks: set[str]) -> None:
        for name in uplinks:
            dispatcher = self.dispatchers.get(name)
            if dispatcher is not None:
                dispatcher.wake()

    async def _shutdown(self) -> None:
        grace = self.config.agent.shutdown_timeout
        log.info("agent.stopping", grace=grace)
        self.supervisor.stopping = True
        sources = [n for n in self.supervisor.states if n.startswith("source:")]
        if self._api is not None:
            await self._api.cleanup()  # stop accepting first: the API, listeners and drivers
        for listener in self._listeners:
            await listener.cleanup()
        await self.supervisor.stop(sources)
        await asyncio.gather(*(d.stop(grace) for d in self.dispatchers.values()))
        await self.supervisor.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.readers is not None:
            await self.readers.close()
        if self.journal is not None:
            await self.journal.close()
        for simulator in self._simulators:
            await simulator.stop()
        log.info("agent.stopped")

    async def _purge_loop(self) -> None:
        assert self.journal is not None
        section = self.config.journal
        settings = retention.Settings(
            days=section.retention_days,
            batch=section.purge_batch,
            pause=section.purge_pause,
            vacuum_pages=section.vacuum_pages,
        )
        kinds = self._domain_retention()
        if any(
            isinstance(s, ProvincialImagingConfig) and s.enabled
            for s in self.config.uplinks.values()
        ):
            kinds |= {kind: (settings.days, make) for kind, make in order_purges().items()}
        if any(
            isinstance(s, ResultsSharingConfig) and s.enabled for s in self.config.uplinks.values()
        ):
            kinds |= sharing_purges(settings.days)
        keeper = retention.JournalKeeper(
            self.journal.run,
            settings,
            kinds,
            files_root=self.config.agent.state_dir,
        )
        while True:
            try:
                done = await keeper.run_pass()
            except JournalClosedError:
                return
            except (JournalError, sqlite3.Error) as err:  # a full disk: again at the next interval
                log.warning("journal.purge_failed", error=str(err))
            else:
                if done.rows or done.pages or done.files:
                    log.info(
                        "journal.purged",
                        pages_returned=done.pages,
                        files_removed=done.files,
                        **done.rows,
                    )
            await asyncio.sleep(section.purge_interval)

    def _domain_retention(self) -> dict[str, tuple[float, Callable[[], retention.Purge]]]:
        """The records the domains own and keep for a period of their own (the longest any
        section of a domain asks for, since its sections share the tables)."""
        enabled = [s for s in self.config.domains.values() if s.enabled]
        kinds: dict[str, tuple[float, Callable[[], retention.Purge]]] = {}
        rp = [s.record_days for s in enabled if isinstance(s, ReprocessingConfig)]
        if rp:
            kinds |= {kind: (max(rp), make) for kind, make in reprocessing_purges().items()}
        im = [s for s in enabled if isinstance(s, ImagingConfig)]
        if im:
            index = max(s.index_keep_days for s in im)
            kinds |= {kind: (index, make) for kind, make in imaging_index_purges().items()}
            # The pull services may ask for an exam as long as for its images.
            exams = max(max(s.record_days, s.pull_keep_days) for s in im)
            kinds |= {kind: (exams, make) for kind, make in imaging_purges().items()}
        lab = [s.record_days for s in enabled if isinstance(s, LabConfig)]
        if lab:
            kinds |= {kind: (max(lab), make) for kind, make in lab_purges().items()}
        return kinds

    async def _stats_loop(self) -> None:
        interval = self.config.agent.stats_interval
        if not interval:
            return
        last: dict[str, tuple[int, int, int]] = {}
        while True:
            await asyncio.sleep(interval)
            for name, dispatcher in self.dispatchers.items():
                c = dispatcher.counters
                now = (c.delivered, c.retried, c.dead)
                if now != last.get(name):
                    log.info(
                        "dispatch.progress",
                        uplink=name,
                        delivered=c.delivered,
                        retried=c.retried,
                        dead=c.dead,
                        breaker=str(dispatcher.breaker.state),
                    )
                    last[name] = now

    async def _health_loop(self) -> None:
        """Publish the agent's health when it changes (and as a heartbeat) to its followers."""
        settings = self.config.status
        if not settings.publish_to:
            return
        published: dict[str, Any] | None = None
        last = 0.0
        while True:
            body, _ = health(await self.observe())
            # Ages and counts move all the time; publish when the verdict or a state changes.
            shape = {k: body[k] for k in ("status", "problems", "sources")} | {
                "breakers": {u: q["breaker"] for u, q in body["uplinks"].items()}
            }
            if shape != published or time.monotonic() - last >= settings.health_heartbeat:
                now = time.time()
                payload = {"at": now, **body}
                uplinks = await self._publish_health(payload, f"health:{now}")
                self._wake_dispatchers(set(uplinks))
                published, last = shape, time.monotonic()
            await asyncio.sleep(settings.health_interval)

    async def _publish_health(self, payload: dict[str, Any], dedupe: str) -> list[str]:
        assert self.journal is not None
        return await self.journal.run(
            partial(publish, subject="health", key="agent", dedupe=dedupe, payload=payload)
        )

    async def _replay_loop(self) -> None:
        """Replay the handler failures an operator asked for (`edge-agent handlers replay`)."""
        assert self.journal is not None
        while True:
            for result in await self.journal.replay_requested():
                if result.error:  # its type only: the message may quote the event
                    error = result.error.partition(":")[0]
                    log.error("journal.replay_failed", failure_id=result.failure_id, error=error)
                else:
                    log.info(
                        "journal.replayed", failure_id=result.failure_id, handler=result.handler
                    )
            await asyncio.sleep(REPLAY_POLL)

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None or self.journal is None:
            return
        while True:
            # Ping only if the writer still commits: a stuck journal should get us restarted.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.journal.run(lambda conn: None)
                    self.notifier.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
