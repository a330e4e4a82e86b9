"""[domains.<name>] type = "reprocessing": stations, endoscopes, staff and the institution."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator

from agent.config import PluginSection, Section, TimeZoneName
from agent.reprocessing.facts import ScopeSystem
from agent.reprocessing.rules import RulesConfig
from agent.vocabulary.patterns import compile_pattern
from agent.vocabulary.steps import Disinfectant, StepKind
from agent.vocabulary.tags import TagIndex

PHOTO_NAME_CHARS: Final = 68  # 64 hex digits of the SHA-256 + ".jpg"/".png"
PHOTO_URL_MAX: Final = 200  # imageUrl, pic1..pic3: S..200


class QualityConfig(Section):
    """[domains.<name>.quality]: how quality records reach the platform."""

    # imageUrl / pic1..pic3 = photo_base_url + "<sha256>.<ext>"; "" sends "photos/<name>".
    # The seed only says 照片存储地址 (≤ 200 chars): confirm at onboarding what the platform
    # expects (a URL it can fetch, a path, an id of an upload of its own).
    photo_base_url: Annotated[str, Field(max_length=PHOTO_URL_MAX - PHOTO_NAME_CHARS)] = ""

    def photo_url(self, name: str) -> str:
        """What the platform's photo fields carry for the stored photo `name`."""
        return (self.photo_base_url or "photos/") + name


class Institution(Section):
    """The hospital's identifiers on the platform."""

    unique_code: Annotated[str, Field(pattern=r"^\w{9}$")]  # 全国唯一码, S9
    credit_code: Annotated[str, Field(pattern=r"^\w{18}$")]  # 统一社会信用代码, S18


class Station(Section):
    """One reprocessing station and the reader tapped there."""

    reader: str  # the reader_id its driver reports
    reader_rfid: str = ""  # the reader's id on the platform (readerId); default `reader`
    step_id: Annotated[int, Field(ge=0)]  # the platform's step id (addCleanStepInfo.stepId)
    name: str  # stepName
    order: Annotated[int, Field(ge=0)]  # orderId
    min_interval: Annotated[int, Field(ge=0)] | None = None  # orderTime, seconds
    parent: str = ""  # parentId
    kind: StepKind
    tap_mode: Literal["enter", "enter_exit"] = "enter"
    agent_type: Literal[0, 1] = 0  # disinfect/sterilize: 0 disinfectant, 1 sterilant
    ratio_number: str = ""  # disinfectant batch in use until an event registers another
    cabinet: str = ""  # store: storage cabinet number (storagetNumber)
    disinfectant: Disinfectant | None = None  # disinfect/sterilize: what the soak basin holds
    concentration_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    washer: str = ""  # machine_wash: the washer-disinfector (its receipt id) at this station

    @property
    def platform_reader_id(self) -> str:
        """The readerId the platform knows this station's reader by."""
        return self.reader_rfid or self.reader


class Endoscope(Section):
    """One endoscope (addEndoSocopeInfo)."""

    number: Annotated[str, Field(min_length=1, max_length=64)]
    rfid: Annotated[str, Field(min_length=1, max_length=64)]
    type_name: str = ""  # e.g. 胃镜, 肠镜, 支气管镜
    brand: str = ""  # the platform calls it `model`
    steel_number: str = ""
    alias: str = ""
    status: Literal[0, 1] = 0  # 0 normal, 1 damaged
    system: ScopeSystem = "other"  # respiratory (bronchoscopes) / digestive: WS 507 rules
    buy_date: date | None = None
    durable_years: Annotated[int, Field(ge=0, le=99)] | None = None


class Washer(Section):
    """A washer-disinfector (清洗消毒机) whose receipts the agent reads."""

    id: Annotated[str, Field(min_length=1, max_length=40)]  # machine id as on its receipts
    system: Literal["digestive", "respiratory"] | None = None  # reserved for this system only
    # Platform step id per washer phase kind (e.g. {disinfect = 24}): each phase is then reported
    # from its own reader "<id>-<kind>". Phases without a step id are reported from the reader of
    # the washer's machine-wash station.
    phase_steps: dict[StepKind, Annotated[int, Field(ge=0)]] = {}


class StaffBadge(Section):
    """A staff member's badge."""

    rfid: str
    id: str
    name: str


class ReprocessingConfig(PluginSection):
    """The endoscopy centre as the agent sees it."""

    uplink: str = "zhejiang_endoscope"  # where the records go
    timezone: TimeZoneName = "Asia/Shanghai"  # the platform's DT fields are local times
    scope_ref: Literal["rfid", "number"] = "rfid"  # what the `rfidNumber` fields carry
    upload_user: Literal["name", "id"] = "name"  # what uploadUser/userName carry
    operator_expiry_minutes: Annotated[float, Field(gt=0)] = 240.0
    new_cycle_after_storage_hours: Annotated[float, Field(gt=0)] = 24.0
    repeat_use_seconds: Annotated[float, Field(ge=0)] = 30.0  # a use tap this soon after a use
    # of the same scope is the same use (MQTT delivers at least once)
    patient_code_pattern: str = r"^[A-Za-z0-9-]{4,32}$"  # unknown tags at the use station
    default_upload_user: Annotated[str, Field(min_length=1, max_length=32)] = "edge-agent"
    # The platform's codes of the hospital. Absent (recommended): the uplink's own unique_code
    # and credit_code are sent, configured once; present, check-config wants them equal.
    institution: Institution | None = None
    stations: list[Station]
    endoscopes: list[Endoscope] = []
    staff: list[StaffBadge] = []
    washers: list[Washer] = []
    rules: RulesConfig = RulesConfig()
    quality: QualityConfig = QualityConfig()  # quality records people enter
    # Uses, cycles (steps, violations, washer runs) and quality tests are kept this long
    # (WS 507-2016 §7.6: at least 3 years); what a lookback in the period reaches stays.
    record_days: Annotated[int, Field(ge=1)] = 1096

    @field_validator("patient_code_pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        compile_pattern(value, group=None)
        return value

    def uplinks_used(self) -> list[str]:
        """The uplink that receives the records."""
        return [self.uplink]

    @model_validator(mode="after")
    def _unique(self) -> ReprocessingConfig:
        for label, values in (
            ("stations: reader", [s.reader for s in self.stations]),
            ("endoscopes: number", [e.number for e in self.endoscopes]),
            ("washers: id", [w.id for w in self.washers]),
        ):
            seen = {v for v in values if values.count(v) > 1}
            if seen:
                raise ValueError(f"{label} must be unique, repeated: {', '.join(sorted(seen))}")
        tag_index(self)  # ValueError if a tag is invalid or two could match the same read
        if not any(s.kind is StepKind.USE for s in self.stations):
            raise ValueError("stations: one station must have kind = 'use'")
        washers = {w.id for w in self.washers}
        for station in self.stations:
            if station.washer and station.washer not in washers:
                raise ValueError(f"stations: {station.reader}: no washer with id {station.washer}")
        return self


def tag_index(config: ReprocessingConfig) -> TagIndex[Endoscope | StaffBadge]:
    """Scopes and badges by tag, matched as agent.vocabulary.tags says (printed decimal = hex)."""
    index: TagIndex[Endoscope | StaffBadge] = TagIndex()
    items: list[Endoscope | StaffBadge] = [*config.endoscopes, *config.staff]
    for item in items:
        index.add(item.rfid, item)
    return index
