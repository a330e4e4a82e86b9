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
    # Messages of one order key leased together and sent one after another by one task, then
    # settled in one commit: fewer commits per message, at the price of resending up to this
    # many per key after a crash (duplicates stay bounded: at most once per message per crash).
    send_run: int = 1
    unreadable_attempts: int = 10  # unreadable answers in a row before a dead letter + alert


@dataclass(slots=True)
class DispatchCounters:
    """What this process delivered since it started."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0


@dataclass(slots=True)
class _Run:
    """Messages of one order key in flight together, and the outcomes of those already sent."""

    messages: list[OutboxMessage]
    outcomes: list[Outcome] = field(default_factory=list)


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
        self._inflight: dict[int, asyncio.Task[None]] = {}  # by the run's first message id
        self._runs: dict[int, _Run] = {}
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
            runs: list[_Run] = []
            if allowed > 0:
                closed = self.breaker.state is BreakerState.CLOSED
                leased = await self.journal.run(
                    partial(
                        outbox.lease,
                        uplink=self.name,
                        limit=allowed,
                        block_on_dead=settings.dead_letter_blocks_key,
                        dead_blocks=self.uplink.dead_blocks_key,
                        now=now,
                        run=settings.send_run if closed else 1,  # a probe is one message
                    )
                )
                if not leased:
                    self.breaker.unused(allowed)
                runs = _runs(leased)
                for run in runs:
                    head = run.messages[0].id
                    self._runs[head] = run
                    self._inflight[head] = asyncio.create_task(
                        self._deliver(run), name=f"send-{head}"
                    )
            if self._stopping:
                break
            if runs and len(runs) == allowed and self.breaker.state is BreakerState.CLOSED:
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
        unfinished = {head: t for head, t in self._inflight.items() if not t.done()}
        for task in unfinished.values():
            task.cancel()
        await asyncio.gather(*unfinished.values(), return_exceptions=True)
        if unfinished:
            # What a cut-off run had sent is settled; the rest goes back unsent (a settle the
            # cancelled task had already submitted only finds its messages no longer in flight).
            runs = [self._runs.pop(head) for head in unfinished if head in self._runs]
            await self.journal.run(partial(self._write_runs, runs=runs))
            released = sum(len(r.messages) - len(r.outcomes) for r in runs)
            log.info("dispatch.released", uplink=self.name, messages=released)
        if self._opened:
            await self.uplink.close()

    async def _deliver(self, run: _Run) -> None:
        head = run.messages[0].id
        try:
            for message in run.messages:
                outcome = await self._attempt_authenticated(message)
                outcome = self._give_up_unreadable(message, outcome)
                run.outcomes.append(outcome)
                self._account(message, outcome)
                if not self._run_goes_on(message, outcome):
                    break  # the rest of the run goes back to the queue, in order, unsent
            await self.journal.run(partial(self._write_runs, runs=[run]))
        finally:
            if not self._stopping:  # stop() settles and releases the runs it cut off
                self._runs.pop(head, None)
            self._inflight.pop(head, None)
            self._wake.set()

    async def _attempt_authenticated(self, message: OutboxMessage) -> Outcome:
        generation = self._auth_generation
        outcome = await self._attempt(message)
        if isinstance(outcome, Retry) and outcome.reauthenticate:
            outcome = await self._reauthenticate(generation) or await self._attempt(message)
            if isinstance(outcome, Retry) and outcome.reauthenticate:
                outcome = Retry(f"still unauthorised after refresh: {outcome.reason}")
        return outcome

    def _run_goes_on(self, message: OutboxMessage, outcome: Outcome) -> bool:
        """Whether the next message of a run may be sent after this outcome (per-key order)."""
        if self._stopping or self.breaker.state is not BreakerState.CLOSED:
            return False
        if isinstance(outcome, Retry):
            return False
        if isinstance(outcome, Reject):
            return not (
                self.settings.dead_letter_blocks_key or message.kind in self.uplink.dead_blocks_key
            )
        return True

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
            return outcome
        count = message.unreadable + 1  # the count is the outbox row's: a restart keeps it
        if count < self.settings.unreadable_attempts:
            return outcome
        reason = f"{count} unreadable answers in a row (unreadable_answer_attempts): "
        return Reject(reason + outcome.reason, outcome.response, UNREADABLE_ALERT)

    def _account(self, message: OutboxMessage, outcome: Outcome) -> None:
        """Count the outcome, feed the breaker and log what changed (before it is written)."""
        now = time.time()
        if isinstance(outcome, Retry):
            self.counters.retried += 1
            # A deferred message says nothing about the platform's health: it answered.
            changed = self.breaker.success() if outcome.deferred else self.breaker.failure(now)
            log.debug(
                "outbox.retry",
                uplink=self.name,
                message_id=message.id,
                attempts=message.attempts,
                reason=outcome.reason,
            )
        elif isinstance(outcome, Reject):
            self.counters.dead += 1
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
            changed = self.breaker.success()
        if changed and self.breaker.state is BreakerState.OPEN:
            error = outcome.reason if isinstance(outcome, Retry) else None
            log.warning(
                "uplink.unavailable",
                uplink=self.name,
                failures=self.breaker.failures,
                probe_in=self.settings.breaker_open_seconds,
                error=error,
            )
        elif changed:
            log.info("uplink.recovered", uplink=self.name)

    def _write_runs(self, conn: sqlite3.Connection, runs: list[_Run]) -> None:
        """Settle each sent message of `runs` and release the unsent ones, in one commit."""
        now = time.time()
        error: str | None = None
        for run in runs:
            for message, outcome in zip(run.messages, run.outcomes, strict=False):
                error = self._mark(conn, message, outcome, now)
            unsent = [m.id for m in run.messages[len(run.outcomes) :]]
            if unsent:
                outbox.release(conn, unsent)
        outbox.save_uplink_state(
            conn,
            self.name,
            breaker=str(self.breaker.state),
            consecutive_failures=self.breaker.failures,
            last_error=error,
            success=error is None,
        )

    def _mark(
        self, conn: sqlite3.Connection, message: OutboxMessage, outcome: Outcome, now: float
    ) -> str | None:
        """Write one outcome; the error it says about the platform, if any."""
        if isinstance(outcome, Retry):
            delay = outcome.after
            if delay is None:
                delay = self.settings.backoff.delay(message.attempts, self._rng)
            count = message.unreadable + 1 if outcome.unreadable else 0
            outbox.mark_retry(
                conn, message.id, outcome.reason, now + delay, outcome.response, unreadable=count
            )
            return None if outcome.deferred else outcome.reason
        if isinstance(outcome, Reject):
            dead_letter(
                conn,
                message=message,
                reason=outcome.reason,
                response=outcome.response,
                alert=outcome.alert,
                severity="error" if outcome.alert == UNREADABLE_ALERT else "critical",
            )
        else:
            outbox.mark_delivered(conn, message.id, outcome.response)
        return None


def _runs(leased: list[OutboxMessage]) -> list[_Run]:
    """Group leased messages into runs: each head followed by the rest of its key."""
    runs: list[_Run] = []
    for message in leased:
        if runs and runs[-1].messages[0].order_key == message.order_key:
            runs[-1].messages.append(message)
        else:
            runs.append(_Run([message]))
    return runs
