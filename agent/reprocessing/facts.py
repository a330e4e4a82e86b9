"""What the WS 507-2016 rules look at: one reprocessing cycle as plain, immutable facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from agent.vocabulary.steps import Disinfectant, StepKind

Severity = Literal["error", "warning"]
Stage = Literal["progress", "complete", "use"]
"""When the rules run: after any step (`progress`), when the cycle ends in storage (`complete`),
or at the use tap (`use`). Missing steps only count at `complete` and `use`."""
ScopeSystem = Literal["digestive", "respiratory", "other"]


@dataclass(frozen=True, slots=True)
class StepFact:
    """One step of the cycle: a station tap (`source="tap"`) or a washer phase (`"washer"`)."""

    kind: StepKind
    started_at: datetime
    ended_at: datetime | None  # None while the step is still open
    source: Literal["tap", "washer"] = "tap"
    station: str = ""  # the reader id, or the washer id for washer phases
    disinfectant: Disinfectant | None = None  # disinfect/sterilize steps, when known
    concentration_pct: float | None = None  # e.g. 2.0 for glutaraldehyde 2 %
    temperature_c: float | None = None


@dataclass(frozen=True, slots=True)
class WasherFact:
    """One washer-disinfector cycle linked to this reprocessing cycle (from its receipt)."""

    washer: str
    cycle_number: str
    started_at: datetime
    ended_at: datetime
    result: Literal["pass", "fail"]
    leak_test: Literal["pass", "fail"] | None = None
    error_code: str = ""  # "" when the receipt shows none
    failed_channels: tuple[str, ...] = ()
    washer_system: ScopeSystem | None = None  # the system the washer is reserved for, if any


@dataclass(frozen=True, slots=True)
class BatchTest:
    """The latest concentration test of a disinfectant batch before this cycle's disinfection."""

    ratio_number: str
    tested_at: datetime
    passed: bool


@dataclass(frozen=True, slots=True)
class CycleFacts:
    """Everything the rules need about one cycle of one scope."""

    scope: str  # the scope's number
    system: ScopeSystem
    steps: tuple[StepFact, ...]  # in the order they started
    washers: tuple[WasherFact, ...] = ()
    previous_use_at: datetime | None = None  # the use this cycle reprocesses the scope after
    batches_used: tuple[str, ...] = ()  # disinfectant batch (ratio) numbers used in this cycle
    batch_tests: tuple[BatchTest, ...] = ()  # latest test per used batch, if any
    use_at: datetime | None = None  # stage "use": when the scope is being used
    timezone: str = "Asia/Shanghai"  # "an earlier day" is a local day


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule the cycle breaks: `error` blocks the scope, `warning` only alerts."""

    rule: str  # stable name, e.g. "contact_time"
    clause: str  # WS 507-2016 clause, e.g. "附录B"
    severity: Severity
    message: str  # for people: what was found against what was required
    details: dict[str, object] = field(default_factory=dict)
