"""Rules on the steps themselves: order, presence, contact and rinse times, concentration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple

from agent.reprocessing.facts import CycleFacts, Stage, StepFact
from agent.reprocessing.rules.catalogue import AGENT_NAMES
from agent.reprocessing.rules.config import RequiredStep, RulesConfig
from agent.vocabulary.steps import STEP_NAMES, Disinfectant, StepKind


class Finding(NamedTuple):
    """A broken rule before its severity and clause are looked up."""

    rule: str
    message: str
    details: dict[str, object]


RANK: dict[StepKind, int] = {
    StepKind.PRE_CLEAN: 0,
    StepKind.LEAK_TEST: 1,
    StepKind.CLEAN: 2,
    StepKind.ENZYME: 2,
    StepKind.RINSE: 3,
    StepKind.DISINFECT: 4,
    StepKind.STERILIZE: 4,
    StepKind.MACHINE_WASH: 4,
    StepKind.FINAL_RINSE: 5,
    StepKind.DRY: 6,
    StepKind.STORE: 7,
}
MACHINE_RANK = 4  # washer phases run their own programme: they all sit in the machine's slot
DISINFECTING = frozenset({StepKind.DISINFECT, StepKind.STERILIZE, StepKind.MACHINE_WASH})
CLEANING = frozenset({StepKind.LEAK_TEST, StepKind.CLEAN, StepKind.ENZYME})


def end_of(step: StepFact, stage: Stage, use_at: datetime | None) -> datetime | None:
    """When the step ended; an open step counts as ended at the use tap, else not yet."""
    if step.ended_at is not None:
        return step.ended_at
    return use_at if stage == "use" else None


def minutes_of(step: StepFact, stage: Stage, use_at: datetime | None) -> float | None:
    """The step's duration in minutes, or None while it cannot be judged."""
    end = end_of(step, stage, use_at)
    return None if end is None else (end - step.started_at).total_seconds() / 60


def uses_machine(facts: CycleFacts) -> bool:
    """Whether a washer-disinfector took part in the cycle."""
    return bool(facts.washers) or any(
        s.kind is StepKind.MACHINE_WASH or s.source == "washer" for s in facts.steps
    )


def check_order(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Each step comes no earlier in the sequence than the furthest step before it."""
    furthest: StepFact | None = None
    for step in facts.steps:
        if step.kind is StepKind.USE:
            continue
        if furthest is not None and _rank(step) < _rank(furthest):
            yield Finding(
                "step_order",
                f"步骤顺序错误：{STEP_NAMES[step.kind]} 在 {STEP_NAMES[furthest.kind]} 之后"
                f" / step out of order: {step.kind.value} after {furthest.kind.value}",
                {"step": step.kind.value, "after": furthest.kind.value},
            )
            continue
        # storage closes a pass: a re-disinfection before the next use starts a new one
        furthest = None if step.kind is StepKind.STORE else step


def _rank(step: StepFact) -> int:
    return MACHINE_RANK if step.source == "washer" else RANK[step.kind]


def _present(facts: CycleFacts, required: RequiredStep) -> bool:
    kinds = {s.kind for s in facts.steps}
    machine = uses_machine(facts)
    if required == "leak_test":
        return StepKind.LEAK_TEST in kinds or any(w.leak_test == "pass" for w in facts.washers)
    if required == "clean":
        # 6.3.1: manual cleaning comes before the machine, so only a station tap counts
        tapped = {s.kind for s in facts.steps if s.source == "tap"}
        return bool(tapped & {StepKind.CLEAN, StepKind.ENZYME})
    if required == "disinfect":
        return machine or bool(kinds & {StepKind.DISINFECT, StepKind.STERILIZE})
    if required in ("rinse", "final_rinse", "dry"):
        return machine or StepKind(required) in kinds
    return StepKind(required) in kinds


def check_missing(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """At storage or use, every required step is present."""
    if stage == "progress":
        return
    for required in config.required_steps:
        if not _present(facts, required):
            yield Finding(
                "missing_step",
                f"缺少步骤：{STEP_NAMES[StepKind(required)]} / missing step: {required}",
                {"step": required},
            )


def check_leak_test(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """At storage or use, the cycle had a leak test (unless `missing_step` already requires one)."""
    if stage == "progress" or "leak_test" in config.required_steps:
        return
    if not _present(facts, "leak_test"):
        yield Finding(
            "leak_test",
            "本次未测漏（宜每次清洗前测漏）/ no leak test in this cycle",
            {"step": "leak_test"},
        )


def check_contact(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Each ended disinfection or sterilisation lasted at least the agent's minimum."""
    for step in facts.steps:
        if step.kind not in (StepKind.DISINFECT, StepKind.STERILIZE):
            continue
        agent = step.disinfectant
        if agent is None:
            if step.kind is StepKind.DISINFECT:
                yield Finding(
                    "disinfectant_unknown",
                    f"消毒剂未知，无法判断消毒时间（{step.station or step.source}）"
                    " / disinfectant unknown, contact time not checked",
                    {"station": step.station},
                )
            continue
        if step.kind is StepKind.DISINFECT:
            minimum = config.contact_minutes.minimum(agent, facts.system)
        else:
            minimum = config.sterilize_minutes.minimum(agent)
        took = minutes_of(step, stage, facts.use_at)
        if minimum is None or took is None or took >= minimum:
            continue
        verb = ("消毒", "contact") if step.kind is StepKind.DISINFECT else ("灭菌", "sterilisation")
        yield Finding(
            "contact_time",
            f"{AGENT_NAMES[agent]} {verb[0]} {took:.1f} min，应 ≥ {minimum:g} min"
            f" / {agent.value} {verb[1]} {took:.1f} min < {minimum:g} min",
            {
                "step": step.kind.value,
                "disinfectant": agent.value,
                "minutes": round(took, 2),
                "required_minutes": minimum,
            },
        )


def check_concentration(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Glutaraldehyde, when its concentration is known, is at least the minimum percentage."""
    for step in facts.steps:
        pct = step.concentration_pct
        if step.disinfectant is not Disinfectant.GLUTARALDEHYDE or pct is None:
            continue
        if pct < config.glutaraldehyde_min_pct:
            yield Finding(
                "concentration",
                f"戊二醛浓度 {pct:g}%，应 ≥ {config.glutaraldehyde_min_pct:g}%"
                f" / glutaraldehyde {pct:g}% < {config.glutaraldehyde_min_pct:g}%",
                {"concentration_pct": pct, "required_pct": config.glutaraldehyde_min_pct},
            )


def check_final_rinse(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Each ended manual final rinse lasted at least the minimum; washers follow their programme."""
    for step in facts.steps:
        if step.kind is not StepKind.FINAL_RINSE or step.source != "tap":
            continue
        took = minutes_of(step, stage, facts.use_at)
        if took is not None and took < config.final_rinse_minutes:
            yield Finding(
                "final_rinse_time",
                f"终末漂洗 {took:.1f} min，应 ≥ {config.final_rinse_minutes:g} min"
                f" / final rinse {took:.1f} min < {config.final_rinse_minutes:g} min",
                {"minutes": round(took, 2), "required_minutes": config.final_rinse_minutes},
            )


def check_delay(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Leak test or manual cleaning started soon enough after the use."""
    if facts.previous_use_at is None:
        return
    first = next((s for s in facts.steps if s.kind in CLEANING and s.source == "tap"), None)
    if first is None:
        return
    waited = (first.started_at - facts.previous_use_at).total_seconds() / 60
    if waited > config.use_to_clean_minutes:
        yield Finding(
            "use_to_clean_delay",
            f"使用后 {waited:.0f} min 才开始{STEP_NAMES[first.kind]}，应 ≤ "
            f"{config.use_to_clean_minutes:g} min / cleaning started {waited:.0f} min after use"
            f" > {config.use_to_clean_minutes:g} min",
            {"minutes": round(waited, 2), "required_minutes": config.use_to_clean_minutes},
        )
