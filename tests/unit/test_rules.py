"""The WS 507-2016 rules engine: each rule, its thresholds, severities and stage semantics."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent.reprocessing.facts import BatchTest, CycleFacts, Stage, StepFact, Violation, WasherFact
from agent.reprocessing.rules import RULES, RulesConfig, evaluate
from agent.vocabulary.steps import Disinfectant, StepKind

DOC = Path(__file__).parents[2] / "docs" / "reprocessing-rules.md"
ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 2, 9, 0, tzinfo=ZONE)
K = StepKind


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def step(kind: StepKind, start: float, minutes: float | None = 1.0, **kw: Any) -> StepFact:
    """A step starting `start` minutes after T0 and lasting `minutes` (None: still open)."""
    end = None if minutes is None else at(start + minutes)
    if kw.get("disinfectant") is not None:
        kw["disinfectant"] = Disinfectant(kw["disinfectant"])
    return StepFact(kind=kind, started_at=at(start), ended_at=end, **kw)


def manual(**overrides: Any) -> CycleFacts:
    """A compliant manual cycle of a digestive scope, stored at +29 min."""
    steps = (
        step(K.PRE_CLEAN, 0),
        step(K.LEAK_TEST, 2, 2),
        step(K.ENZYME, 5, 5),
        step(K.RINSE, 11, 2),
        step(K.DISINFECT, 14, 6, disinfectant=Disinfectant.OPA, concentration_pct=0.55),
        step(K.FINAL_RINSE, 21, 3),
        step(K.DRY, 25, 3),
        step(K.STORE, 29, None),
    )
    base = CycleFacts(
        scope="GIF-001",
        system="digestive",
        steps=steps,
        previous_use_at=at(-10),
        batches_used=("B1",),
        batch_tests=(BatchTest("B1", at(-60), passed=True),),
    )
    return dataclasses.replace(base, **overrides)


def washer(**kw: Any) -> WasherFact:
    fields: dict[str, Any] = {
        "washer": "W1",
        "cycle_number": "42",
        "started_at": at(11),
        "ended_at": at(40),
        "result": "pass",
        "leak_test": "pass",
        "washer_system": "digestive",
    }
    return WasherFact(**(fields | kw))


def machine(**overrides: Any) -> CycleFacts:
    """A compliant machine cycle: manual leak test and clean, then the washer."""
    steps = (
        step(K.LEAK_TEST, 2, 2),
        step(K.CLEAN, 5, 5),
        step(K.MACHINE_WASH, 11, 29, station="W1"),
        step(K.STORE, 41, None),
    )
    return manual(**({"steps": steps, "washers": (washer(),)} | overrides))


def replace_step(facts: CycleFacts, kind: StepKind, new: StepFact | None) -> CycleFacts:
    steps = tuple(new if s.kind is kind else s for s in facts.steps)
    return dataclasses.replace(facts, steps=tuple(s for s in steps if s is not None))


def run(facts: CycleFacts, stage: Stage = "complete", **config: Any) -> list[Violation]:
    if stage == "use" and facts.use_at is None:
        facts = dataclasses.replace(facts, use_at=at(60))
    return evaluate(facts, RulesConfig.model_validate(config), stage)


def rules_of(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.rule, v.severity) for v in violations]


@pytest.mark.parametrize("stage", ["progress", "complete", "use"])
@pytest.mark.parametrize("cycle", [manual, machine])
def test_compliant_cycles_pass(cycle, stage):
    assert run(cycle(), stage) == []


def test_evaluate_is_deterministic():
    facts = manual(steps=(step(K.RINSE, 0), step(K.CLEAN, 2)), previous_use_at=at(-200))
    assert run(facts) == run(facts)


# step_order


def test_out_of_order_step_is_an_error_even_in_progress():
    facts = manual(
        steps=(
            step(K.ENZYME, 0, 5),
            step(K.DISINFECT, 6, 6, disinfectant="opa"),
            step(K.RINSE, 13, 2),
        )
    )
    found = run(facts, "progress")
    assert rules_of(found) == [("step_order", "error")]
    assert found[0].message.startswith("步骤顺序错误：漂洗 在 消毒 之后")
    assert found[0].details == {"step": "rinse", "after": "disinfect"}


def test_manual_steps_after_the_machine_are_out_of_order():
    facts = machine(steps=(step(K.CLEAN, 5, 5), step(K.MACHINE_WASH, 11, 29), step(K.RINSE, 41)))
    assert ("step_order", "error") in rules_of(run(facts, "progress"))


def test_washer_phases_and_manual_drying_after_the_machine_are_in_order():
    phases = tuple(
        step(kind, 11 + i * 5, 5, source="washer", station="W1")
        for i, kind in enumerate((K.CLEAN, K.RINSE, K.DISINFECT, K.FINAL_RINSE))
    )
    facts = machine(steps=(step(K.LEAK_TEST, 2, 2), step(K.CLEAN, 5, 5), *phases, step(K.DRY, 40)))
    assert [v for v in run(facts) if v.rule == "step_order"] == []


def test_redisinfection_after_storage_starts_a_new_pass():
    again = (
        step(K.DISINFECT, 600, 6, disinfectant="opa"),
        step(K.FINAL_RINSE, 607, 3),
        step(K.DRY, 611, 3),
    )
    facts = manual()
    steps = (*facts.steps[:-1], step(K.STORE, 29, 500), *again)
    assert run(dataclasses.replace(facts, steps=steps, use_at=at(620)), "use") == []


# missing_step and leak_test


def test_missing_step_only_counts_when_stored_or_used():
    facts = replace_step(manual(), K.FINAL_RINSE, None)
    assert run(facts, "progress") == []
    for stage in ("complete", "use"):
        found = run(facts, stage)
        assert rules_of(found) == [("missing_step", "error")]
        assert found[0].message == "缺少步骤：终末漂洗 / missing step: final_rinse"


def test_machine_flow_still_needs_manual_cleaning():
    facts = replace_step(machine(), K.CLEAN, None)
    found = run(facts)
    assert [v.details for v in found if v.rule == "missing_step"] == [{"step": "clean"}]


def test_required_steps_are_configurable():
    facts = replace_step(manual(), K.PRE_CLEAN, None)
    assert run(facts) == []
    found = run(facts, required_steps=["pre_clean", "clean", "disinfect"])
    assert [v.details for v in found] == [{"step": "pre_clean"}]


def test_sterilization_counts_as_disinfection():
    new = step(K.STERILIZE, 14, 601, disinfectant="glutaraldehyde", concentration_pct=2.0)
    facts = replace_step(manual(), K.DISINFECT, new)
    facts = dataclasses.replace(
        facts,
        steps=tuple(
            s
            if s.kind in (K.PRE_CLEAN, K.LEAK_TEST, K.ENZYME, K.RINSE, K.STERILIZE)
            else dataclasses.replace(
                s,
                started_at=s.started_at + timedelta(hours=10),
                ended_at=s.ended_at and s.ended_at + timedelta(hours=10),
            )
            for s in facts.steps
        ),
    )
    assert run(facts) == []


def test_missing_leak_test_is_a_warning_at_storage_and_use():
    facts = replace_step(manual(), K.LEAK_TEST, None)
    assert run(facts, "progress") == []
    assert rules_of(run(facts)) == [("leak_test", "warning")]
    assert rules_of(run(facts, "use")) == [("leak_test", "warning")]


def test_a_passed_washer_leak_test_counts():
    facts = replace_step(machine(), K.LEAK_TEST, None)
    assert run(facts) == []
    no_test = dataclasses.replace(facts, washers=(washer(leak_test=None),))
    assert rules_of(run(no_test)) == [("leak_test", "warning")]


def test_required_leak_test_is_reported_once_as_missing_step():
    facts = replace_step(manual(), K.LEAK_TEST, None)
    found = run(facts, required_steps=["leak_test", "clean"])
    assert rules_of(found) == [("missing_step", "error")]


# contact_time, disinfectant_unknown, concentration


def disinfect(minutes: float | None, agent: str | None = "opa", **kw: Any) -> CycleFacts:
    facts = manual(**kw)
    return replace_step(facts, K.DISINFECT, step(K.DISINFECT, 14, minutes, disinfectant=agent))


def test_short_contact_is_an_error():
    found = run(disinfect(3), "progress")
    assert rules_of(found) == [("contact_time", "error")]
    assert found[0].clause == "附录B"
    assert found[0].message == ("邻苯二甲醛 消毒 3.0 min，应 ≥ 5 min / opa contact 3.0 min < 5 min")
    assert found[0].details["required_minutes"] == 5.0


@pytest.mark.parametrize(
    ("agent", "system", "minutes", "ok"),
    [
        ("glutaraldehyde", "digestive", 10, True),
        ("glutaraldehyde", "respiratory", 10, False),
        ("glutaraldehyde", "respiratory", 20, True),
        ("peracetic_acid", "digestive", 4.9, False),
        ("chlorine_dioxide", "digestive", 3, True),
        ("acidic_oxidising_water", "digestive", 2, False),
        ("custom", "digestive", 0.5, True),
    ],
)
def test_contact_minimum_depends_on_agent_and_system(agent, system, minutes, ok):
    found = run(disinfect(minutes, agent, system=system))
    assert (found == []) is ok


def test_contact_minimum_is_configurable():
    assert run(disinfect(3), contact_minutes={"opa": 2}) == []
    assert rules_of(run(disinfect(3), contact_minutes={"custom": 5})) == [("contact_time", "error")]
    assert rules_of(run(disinfect(3, "custom"), contact_minutes={"custom": 5})) == [
        ("contact_time", "error")
    ]


def test_open_disinfection_is_judged_only_at_use():
    assert run(disinfect(None), "progress") == []
    early_use = disinfect(None, use_at=at(16))
    assert rules_of(run(early_use, "use")) == [("contact_time", "error")]


def test_short_sterilisation_is_an_error():
    facts = replace_step(
        manual(), K.DISINFECT, step(K.STERILIZE, 14, 60, disinfectant="glutaraldehyde")
    )
    found = run(facts, "progress")
    assert rules_of(found) == [("contact_time", "error")]
    assert "600 min" in found[0].message
    assert run(facts, "progress", sterilize_minutes={"glutaraldehyde": 60}) == []


def test_unknown_disinfectant_is_a_warning():
    found = run(disinfect(1, None), "progress")
    assert rules_of(found) == [("disinfectant_unknown", "warning")]


def test_low_glutaraldehyde_concentration_is_an_error():
    weak = step(K.DISINFECT, 14, 10, disinfectant="glutaraldehyde", concentration_pct=1.5)
    facts = replace_step(manual(), K.DISINFECT, weak)
    found = run(facts, "progress")
    assert rules_of(found) == [("concentration", "error")]
    assert found[0].message.startswith("戊二醛浓度 1.5%，应 ≥ 2%")
    assert run(facts, "progress", glutaraldehyde_min_pct=1.5) == []


# final_rinse_time


def test_short_manual_final_rinse_is_an_error():
    facts = replace_step(manual(), K.FINAL_RINSE, step(K.FINAL_RINSE, 21, 1))
    found = run(facts, "progress")
    assert rules_of(found) == [("final_rinse_time", "error")]
    assert found[0].clause == "6.2.6 c)"
    assert run(facts, "progress", final_rinse_minutes=1) == []


def test_washer_final_rinse_follows_its_programme():
    rinse = step(K.FINAL_RINSE, 21, 0.5, source="washer", station="W1")
    assert run(replace_step(manual(), K.FINAL_RINSE, rinse), "progress") == []


# use_to_clean_delay


def test_late_cleaning_is_a_warning():
    facts = manual(previous_use_at=at(-90))
    found = run(facts, "progress")
    assert rules_of(found) == [("use_to_clean_delay", "warning")]
    assert "92 min" in found[0].message
    assert run(facts, "progress", use_to_clean_minutes=120) == []


def test_bedside_pre_clean_does_not_stop_the_delay_clock():
    facts = manual(previous_use_at=at(-90), steps=(step(K.PRE_CLEAN, 0),))
    assert run(facts, "progress") == []  # nothing to judge until leak test or cleaning starts


# daily_redisinfection and storage_time


def test_use_on_a_later_local_day_needs_redisinfection():
    facts = manual(use_at=at(24 * 60))
    found = run(facts, "use")
    assert rules_of(found) == [("daily_redisinfection", "error")]
    assert "2024-05-02" in found[0].message
    assert run(facts, "complete") == []


def test_the_day_is_the_local_day():
    late = datetime(2024, 5, 2, 23, 0, tzinfo=ZONE) - T0
    shift = late.total_seconds() / 60
    steps = tuple(
        dataclasses.replace(
            s,
            started_at=at(shift + (s.started_at - T0).total_seconds() / 60),
            ended_at=s.ended_at and s.ended_at + late,
        )
        for s in manual().steps
    )
    facts = manual(
        steps=steps,
        previous_use_at=at(shift - 10),
        batch_tests=(BatchTest("B1", at(shift - 60), passed=True),),
    )
    after_midnight = datetime(2024, 5, 3, 0, 30, tzinfo=ZONE)
    assert rules_of(run(dataclasses.replace(facts, use_at=after_midnight), "use")) == [
        ("daily_redisinfection", "error")
    ]
    assert run(dataclasses.replace(facts, use_at=at(shift + 50)), "use") == []


def test_sterilised_scopes_need_no_daily_redisinfection():
    sterile = step(K.STERILIZE, 14, 601, disinfectant="glutaraldehyde")
    facts = replace_step(manual(use_at=at(2 * 24 * 60)), K.DISINFECT, sterile)
    facts = dataclasses.replace(facts, steps=facts.steps[:5])  # stop after sterilisation
    assert [v.rule for v in run(facts, "use")] == ["missing_step", "missing_step"]


def test_storage_limit_is_optional():
    facts = manual(use_at=at(5 * 60))
    assert run(facts, "use") == []
    found = run(facts, "use", storage_max_hours=4)
    assert rules_of(found) == [("storage_time", "error")]
    assert found[0].details["limit_hours"] == 4


# washer_failure and system_separation


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ({"result": "fail"}, "result fail"),
        ({"leak_test": "fail"}, "leak test failed"),
        ({"error_code": "E12"}, "error code E12"),
        ({"failed_channels": ("air", "water")}, "failed channels air, water"),
    ],
)
def test_washer_faults_are_errors(fault, text):
    found = run(machine(washers=(washer(**fault),)), "progress")
    assert rules_of(found) == [("washer_failure", "error")]
    assert text in found[0].message


def test_washer_reserved_for_another_system_is_an_error():
    facts = machine(system="respiratory")
    found = run(facts, "progress")
    assert rules_of(found) == [("system_separation", "error")]
    assert found[0].message.startswith("呼吸系统内镜使用了消化系统专用清洗消毒机 W1")
    shared = machine(system="respiratory", washers=(washer(washer_system=None),))
    assert run(shared, "progress") == []


# batch_monitoring


@pytest.mark.parametrize(
    ("tests", "text"),
    [
        ((), "no concentration test"),
        ((BatchTest("B1", at(-60), passed=False),), "concentration test failed"),
        ((BatchTest("B1", at(-30 * 60), passed=True),), "30.2 h before use > 24 h"),
    ],
)
def test_batch_without_a_recent_passing_test_is_an_error(tests, text):
    found = run(manual(batch_tests=tests), "progress")
    assert rules_of(found) == [("batch_monitoring", "error")]
    assert text in found[0].message


def test_batch_test_window_is_configurable():
    facts = manual(batch_tests=(BatchTest("B1", at(-30 * 60), passed=True),))
    assert run(facts, "progress", batch_test_hours=48) == []


# severities and the config


def test_severity_overrides():
    facts = disinfect(3)
    assert run(facts, severity={"contact_time": "off"}) == []
    assert rules_of(run(facts, severity={"contact_time": "warning"})) == [
        ("contact_time", "warning")
    ]
    late = manual(previous_use_at=at(-90))
    assert rules_of(run(late, severity={"use_to_clean_delay": "error"})) == [
        ("use_to_clean_delay", "error")
    ]


def test_unknown_rule_in_severity_is_rejected_by_name():
    with pytest.raises(ValidationError, match="unknown rule contact_tme"):
        RulesConfig.model_validate({"severity": {"contact_tme": "off"}})


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError):
        RulesConfig.model_validate({"contact_minutes": {"bleach": 5}})
    with pytest.raises(ValidationError):
        RulesConfig.model_validate({"final_rinse_minute": 2})


def test_every_rule_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in RULES if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"rules missing from {DOC.name}: {missing}"
    for field in RulesConfig.model_fields:
        assert field in text, f"option {field} missing from {DOC.name}"
