"""What the WS 507-2016 rules look at: one reprocessing cycle as plain, immutable facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

Severity = Literal["error", "warning"]
Stage = Literal["progress", "complete", "use"]
"""When the rules run: after any step (`progress`), when the cycle ends in storage (`complete`),
or at the use tap (`use`). Missing steps only count at `complete` and `use`."""
ScopeSystem = Literal["digestive", "respiratory", "other"]


class StepKind(StrEnum):
    """What a station does; decides which platform records its taps produce."""

    PRE_CLEAN = "pre_clean"
    LEAK_TEST = "leak_test"
    CLEAN = "clean"
    ENZYME = "enzyme"
    RINSE = "rinse"
    DISINFECT = "disinfect"
    STERILIZE = "sterilize"
    FINAL_RINSE = "final_rinse"
    DRY = "dry"
    MACHINE_WASH = "machine_wash"
    STORE = "store"
    USE = "use"


STEP_NAMES: dict[StepKind, str] = {  # as Chinese step tables name them
    StepKind.PRE_CLEAN: "预处理",
    StepKind.LEAK_TEST: "测漏",
    StepKind.CLEAN: "清洗",
    StepKind.ENZYME: "酶洗",
    StepKind.RINSE: "漂洗",
    StepKind.DISINFECT: "消毒",
    StepKind.STERILIZE: "灭菌",
    StepKind.FINAL_RINSE: "终末漂洗",
    StepKind.DRY: "干燥",
    StepKind.MACHINE_WASH: "机洗",
    StepKind.STORE: "储存",
    StepKind.USE: "使用",
}


class Disinfectant(StrEnum):
    """The disinfectants and sterilants of WS 507-2016 Appendix B (platform codes 1-6)."""

    OPA = "opa"  # 邻苯二甲醛
    GLUTARALDEHYDE = "glutaraldehyde"  # 戊二醛
    PERACETIC_ACID = "peracetic_acid"  # 过氧乙酸
    CHLORINE_DIOXIDE = "chlorine_dioxide"  # 二氧化氯
    ACIDIC_OXIDISING_WATER = "acidic_oxidising_water"  # 酸性氧化电位水
    CUSTOM = "custom"  # 其他: follow the product's instructions

    @property
    def platform_code(self) -> int:
        """uploadDisinfectData.disinfectantConc: 1 OPA … 6 custom."""
        return list(Disinfectant).index(self) + 1


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
