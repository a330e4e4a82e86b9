"""One delivery loop per uplink: lease due messages, send concurrently, settle each outcome."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass, field
from functools import partial

import structlog

from agent.dispatch.outcomes import Outcome, Reject, Retry
from agent.dispatch.policy import Backoff, Breaker, BreakerState
from agent.dispatch.uplink import Uplink
from agent.journal import outbox
from agent.journal.alerts import Alert, Severity, raise_alert
from agent.journal.outbox import OutboxMessage
from agent.journal.writer import Journal

log = structlog.get_logger(__name__)
UNREADABLE_ALERT = "uplink_answer_unreadable"  # a message dead-lettered for unreadable answers


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How one uplink's messages are delivered."""

    concurrency: int = 4
    send_timeout: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    breaker_threshold: int = 5
    breaker_open_seconds: float = 30.0
    dead_letter_blocks_key: bool = False
    poll_interval: float = 1.0  # also how soon a CLI `outbox retry` is noticed
    unreadable_attempts: int = 10  # unreadable answers in a row before a dead letter + alert


@dataclass(slots=True)
class DispatchCounters:
    """What this process delivered since it started."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0


def dead_letter(
    conn: sqlite3.Connection,
    *,
    message: OutboxMessage,
    reason: str,
    response: str | None,
    alert: str | None,
    severity: Severity = "critical",
) -> None:
    """Make the message a dead letter and, if the refusal calls for one, raise its alert."""
    outbox.mark_dead(conn, message.id, reason, response)
    if alert:
        origin = f"outbox:{message.id}"
        raise_alert(conn, Alert(alert, message.order_key, reason, origin, severity))


class Dispatcher:
    """Delivers one uplink's outbox: per-key FIFO, at-least-once, never drops a message."""

    def __init__(
        self,
        journal: Journal,
        uplink: Uplink,
        settings: DispatchSettings,
        rng: random.Random | None = None,
    ) -> None:
        self.journal = journal
        self.uplink = uplink
        self.settings = settings
        self.breaker = Breaker(settings.breaker_threshold, settings.breaker_open_seconds)
        self.counters = DispatchCounters()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Unreadable answers in a row per message, counted by this process (a restart recounts).
        self._unreadable: dict[int, int] = {}
        self._stopping = False
        self._auth_lock = asyncio.Lock()
        self._auth_generation = 0
        self._opened = False
        self._loop_exited = asyncio.Event()
        self._loop_exited.set()

    @property
    def name(self) -> str:
        """The uplink's configured name."""
        return self.uplink.name

    def wake(self) -> None:
        """Look for due messages now (new messages were committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until `stop`; safe to call again after a crash (the supervisor does)."""
        if not self._opened:
            await self.uplink.open()
            self._opened = True
        self._loop_exited.clear()
        try:
            await self._deliver_until_stopped()
        finally:
            self._loop_exited.set()

    async def _deliver_until_stopped(self) -> None:
        settings = self.settings
        while not self._stopping:
            self._wake.clear()
            now = time.time()
            free = settings.concurrency - len(self._inflight)
            allowed = self.breaker.allowance(now, free)
            leased: list[OutboxMessage] = []
            if allowed > 0:
                leased = await self.journal.run(
                    partial(
                        outbox.lease,
                        uplink=self.name,
                        limit=allowed,
                        block_on_dead=settings.dead_letter_blocks_key,
                        dead_blocks=self.uplink.dead_blocks_key,
                        now=now,
                    )
                )
                if not leased:
                    self.breaker.unused(allowed)
                for message in leased:
                    task = asyncio.create_task(self._deliver(message), name=f"send-{message.id}")
                    self._inflight[message.id] = task
            if self._stopping:
                break
            if leased and len(leased) == allowed and self.breaker.state is BreakerState.CLOSED:
                continue  # there may be more due; slots permitting, lease again at once
            await self._idle(await self._wait_hint(now, allowed))

    async def _wait_hint(self, now: float, allowed: int) -> float:
        if self.breaker.state is BreakerState.OPEN:
            return max(self.breaker.reopen_at - now, 0.0)
        if allowed <= 0:
            return self.settings.poll_interval  # slots full or probe running: a finish wakes us
        due = await self.journal.run(partial(outbox.next_due, uplink=self.name))
        if due is None or due <= now:  # nothing pending, or only followers of busy keys
            return self.settings.poll_interval
        return min(due - now, self.settings.poll_interval)

    async def _idle(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def stop(self, grace: float) -> None:
        """Stop leasing, let in-flight sends finish within `grace` s, release the rest unsent."""
        self._stopping = True
        self._wake.set()
        await self._loop_exited.wait()  # a lease in progress must have started its sends
        tasks = list(self._inflight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        unfinished = {mid: t for mid, t in self._inflight.items() if not t.done()}
        for task in unfinished.values():
            task.cancel()
        await asyncio.gather(*unfinished.values(), return_exceptions=True)
        if unfinished:
            await self.journal.run(partial(outbox.release, message_ids=list(unfinished)))
            log.info("dispatch.released", uplink=self.name, messages=len(unfinished))
        if self._opened:
            await self.uplink.close()

    async def _deliver(self, message: OutboxMessage) -> None:
        try:
            generation = self._auth_generation
            outcome = await self._attempt(message)
            if isinstance(outcome, Retry) and outcome.reauthenticate:
                outcome = await self._reauthenticate(generation) or await self._attempt(message)
                if isinstance(outcome, Retry) and outcome.reauthenticate:
                    outcome = Retry(f"still unauthorised after refresh: {outcome.reason}")
            await self._settle(message, outcome)
        finally:
            self._inflight.pop(message.id, None)
            self._wake.set()

    async def _attempt(self, message: OutboxMessage) -> Outcome:
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                return await self.uplink.send(message)
        except TimeoutError:
            return Retry(f"no answer within {self.settings.send_timeout:g} s")
        except Exception as err:  # task boundary: an uplink bug must not lose the message
            log.exception("dispatch.send_crashed", uplink=self.name, message_id=message.id)
            return Retry(f"{type(err).__name__}: {err}")

    async def _reauthenticate(self, generation: int) -> Outcome | None:
        """Refresh credentials once for all sends that saw the same expiry; None when done."""
        async with self._auth_lock:
            if generation != self._auth_generation:
                return None  # another send already refreshed
            try:
                await self.uplink.authenticate()
            except Exception as err:  # task boundary: treat like any transient failure
                return Retry(f"authentication failed: {type(err).__name__}: {err}")
            self._auth_generation += 1
            log.info("uplink.reauthenticated", uplink=self.name)
            return None

    def _give_up_unreadable(self, message: OutboxMessage, outcome: Outcome) -> Outcome:
        """`outcome`, or a Reject once the platform's answers were unreadable too often in a row."""
        if not (isinstance(outcome, Retry) and outcome.unreadable):
            self._unreadable.pop(message.id, None)
            return outcome
        count = self._unreadable.get(message.id, 0) + 1
        if count < self.settings.unreadable_attempts:
            self._unreadable[message.id] = count
            return outcome
        self._unreadable.pop(message.id, None)
        reason = f"{count} unreadable answers in a row (unreadable_answer_attempts): "
        return Reject(reason + outcome.reason, outcome.response, UNREADABLE_ALERT)

    async def _settle(self, message: OutboxMessage, outcome: Outcome) -> None:
        now = time.time()
        outcome = self._give_up_unreadable(message, outcome)
        unreadable = isinstance(outcome, Reject) and outcome.alert == UNREADABLE_ALERT
        if isinstance(outcome, Retry):
            self.counters.retried += 1
            delay = outcome.after
            if delay is None:
                delay = self.settings.backoff.delay(message.attempts, self._rng)
            mark = partial(
                outbox.mark_retry,
                message_id=message.id,
                error=outcome.reason,
                not_before=now + delay,
                response=outcome.response,
            )
            # A deferred message says nothing about the platform's health: it answered.
            changed = self.breaker.success() if outcome.deferred else self.breaker.failure(now)
            log.debug(
                "outbox.retry",
                uplink=self.name,
                message_id=message.id,
                attempts=message.attempts,
                delay=round(delay, 3),
                reason=outcome.reason,
            )
        elif isinstance(outcome, Reject):
            self.counters.dead += 1
            mark = partial(
                dead_letter,
                message=message,
                reason=outcome.reason,
                response=outcome.response,
                alert=outcome.alert,
                severity="error" if unreadable else "critical",
            )
            changed = self.breaker.success()  # the platform answered: it is up
            log.warning(
                "outbox.dead_letter",
                uplink=self.name,
                message_id=message.id,
                kind=message.kind,
                reason=outcome.reason,
            )
        else:
            self.counters.delivered += 1
            mark = partial(outbox.mark_delivered, message_id=message.id, response=outcome.response)
            changed = self.breaker.success()
        error = outcome.reason if isinstance(outcome, Retry) and not outcome.deferred else None
        save_state = partial(
            outbox.save_uplink_state,
            uplink=self.name,
            breaker=str(self.breaker.state),
            consecutive_failures=self.breaker.failures,
            last_error=error,
            success=error is None,
        )

        def settle(conn: sqlite3.Connection) -> None:
            mark(conn)
            save_state(conn)

        await self.journal.run(settle)
        if changed and self.breaker.state is BreakerState.OPEN:
            log.warning(
                "uplink.unavailable",
                uplink=self.name,
                failures=self.breaker.failures,
                probe_in=self.settings.breaker_open_seconds,
                error=error,
            )
        elif changed:
            log.info("uplink.recovered", uplink=self.name)
