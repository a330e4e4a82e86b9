"""/metrics (Prometheus text) and /healthz (JSON, 200 or 503) from one snapshot of the agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.observe import Snapshot
from agent.web.context import answer

Observe = Callable[[], Awaitable[Snapshot]]
OBSERVE_KEY: web.AppKey[Observe] = web.AppKey("observe")
OUTBOX_STATES = ("pending", "inflight", "delivered", "dead")
BREAKER_STATES = ("closed", "open", "half_open")
DISK_LEVELS = ("ok", "warning", "critical")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector(Collector):
    """Turns one snapshot into metric families (labels: uplink, source, state — all bounded)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric of the snapshot."""
        s = self.snapshot
        database = GaugeMetricFamily("edge_agent_database_up", "1 if the journal answers")
        database.add_metric([], 1 if s.database_ok else 0)
        yield database
        commits = CounterMetricFamily("edge_agent_journal_commits", "journal commits")
        commits.add_metric([], s.commits)
        yield commits
        yield from self._queues()
        yield from self._sources()
        yield from self._listeners()
        alerts = GaugeMetricFamily(
            "edge_agent_alerts_open", "alerts not acknowledged", labels=["severity"]
        )
        for severity in ("critical", "error", "warning"):
            alerts.add_metric([severity], s.open_alerts.get(severity, 0))
        yield alerts
        yield from self._disk()

    def _disk(self) -> Iterator[Metric]:
        disk = self.snapshot.disk
        if disk is None:
            return
        if disk.free_bytes is not None:
            free = GaugeMetricFamily(
                "edge_agent_spool_free_bytes", "free space on the spool's filesystem"
            )
            free.add_metric([], disk.free_bytes)
            yield free
        level = GaugeMetricFamily(
            "edge_agent_disk_pressure_level",
            "1 for the spool disk's pressure level (ok, warning, critical)",
            labels=["level"],
        )
        for name in DISK_LEVELS:
            level.add_metric([name], 1 if disk.level == name else 0)
        yield level
        thresholds = GaugeMetricFamily(
            "edge_agent_disk_pressure_threshold_bytes",
            "free space below which a pressure level starts (0: off)",
            labels=["level"],
        )
        thresholds.add_metric(["warning"], disk.warning_free_mb * 1024 * 1024)
        thresholds.add_metric(["critical"], disk.critical_free_mb * 1024 * 1024)
        yield thresholds

    def _queues(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "edge_agent_outbox_messages", "outbox messages", labels=["uplink", "state"]
        )
        oldest = GaugeMetricFamily(
            "edge_agent_outbox_oldest_pending_seconds",
            "age of the oldest pending message",
            labels=["uplink"],
        )
        breaker = GaugeMetricFamily(
            "edge_agent_uplink_breaker_state",
            "1 for the circuit breaker's current state",
            labels=["uplink", "state"],
        )
        deliveries = CounterMetricFamily(
            "edge_agent_deliveries",
            "send outcomes since the agent started",
            labels=["uplink", "outcome"],
        )
        for q in self.snapshot.queues:
            for state in OUTBOX_STATES:
                messages.add_metric([q.uplink, state], q.counts.get(state, 0))
            oldest.add_metric([q.uplink], q.oldest_pending_age or 0.0)
            for state in BREAKER_STATES:
                breaker.add_metric([q.uplink, state], 1 if q.breaker == state else 0)
            deliveries.add_metric([q.uplink, "delivered"], q.delivered_total)
            deliveries.add_metric([q.uplink, "retried"], q.retried_total)
            deliveries.add_metric([q.uplink, "dead"], q.dead_total)
        yield from (messages, oldest, breaker, deliveries)

    def _sources(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "edge_agent_source_up", "1 while the source runs", labels=["source", "type"]
        )
        online = GaugeMetricFamily(
            "edge_agent_source_online", "1 while its device is connected", labels=["source", "type"]
        )
        counted = CounterMetricFamily(
            "edge_agent_source_events",
            "what a source counted: taps, receipts, rejects by reason",
            labels=["source", "type", "counter"],
        )
        for source in self.snapshot.sources:
            up.add_metric([source.name, source.type], 1 if source.component == "running" else 0)
            if source.online is not None:
                online.add_metric([source.name, source.type], 1 if source.online else 0)
            for key, value in sorted(source.counters.items()):
                counted.add_metric([source.name, source.type, key], value)
        yield from (up, online, counted)

    def _listeners(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "edge_agent_listener_requests",
            "requests a platform listener received",
            labels=["listener"],
        )
        refused = CounterMetricFamily(
            "edge_agent_listener_refused",
            "requests a platform listener refused: address, token, size, signature",
            labels=["listener", "reason"],
        )
        for listener in self.snapshot.listeners:
            requests.add_metric([listener.name], listener.requests)
            for reason, count in sorted(listener.refused.items()):
                refused.add_metric([listener.name, reason], count)
        yield from (requests, refused)


def render(snapshot: Snapshot) -> bytes:
    """The Prometheus text exposition of `snapshot`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


def health(snapshot: Snapshot) -> tuple[dict[str, Any], int]:
    """The /healthz body and status: 503 when the journal fails or a breaker is open;
    "degraded" (still 200: the agent records and forwards) while a device is away or the
    spool's disk is at its warning or critical level."""
    problems = [] if snapshot.database_ok else ["database"]
    problems += [f"uplink:{q.uplink}" for q in snapshot.queues if q.breaker == "open"]
    degraded = [
        f"source:{s.name}: {'down' if s.component == 'down' else 'offline'}"
        + (f" ({s.detail})" if s.detail else "")
        for s in snapshot.sources
        if s.component == "down" or (s.component == "running" and s.online is False)
    ]
    disk = snapshot.disk
    if disk is not None and disk.level != "ok":
        degraded.append(f"disk: {disk.level} (spool's free space below its threshold)")
    body: dict[str, Any] = {
        "status": "unhealthy" if problems else "degraded" if degraded else "ok",
        "problems": problems,
        "degraded": degraded,
        "database": {"ok": snapshot.database_ok, "error": snapshot.database_error or None},
        "uplinks": {
            q.uplink: {
                "breaker": q.breaker,
                "pending": q.counts.get("pending", 0),
                "dead": q.counts.get("dead", 0),
                "oldest_pending_seconds": q.oldest_pending_age,
            }
            for q in snapshot.queues
        },
        "sources": {
            s.name: {"type": s.type, "state": s.component, "online": s.online, "link": s.detail}
            for s in snapshot.sources
        },
        "open_alerts": snapshot.open_alerts,
    }
    if disk is not None:
        body["disk"] = {
            "level": disk.level,
            "free_bytes": disk.free_bytes,
            "warning_free_mb": disk.warning_free_mb,
            "critical_free_mb": disk.critical_free_mb,
        }
    return body, 503 if problems else 200


async def metrics_page(request: web.Request) -> web.Response:
    """GET /metrics"""
    snapshot = await request.app[OBSERVE_KEY]()
    return web.Response(body=render(snapshot), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz"""
    body, status = health(await request.app[OBSERVE_KEY]())
    return answer(body, status=status)


def add_observability_routes(app: web.Application, observe: Observe) -> None:
    """Serve /metrics and /healthz from `observe()`."""
    app[OBSERVE_KEY] = observe
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
