"""Rules on what surrounds the steps: washers, disinfectant batches, the day and storage time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.reprocessing.facts import CycleFacts, Stage
from agent.reprocessing.rules.config import RulesConfig
from agent.reprocessing.rules.steps import DISINFECTING, Finding, end_of
from agent.vocabulary.steps import StepKind

SYSTEM_NAMES = {"digestive": "消化", "respiratory": "呼吸", "other": "其他"}


def _local(moment: datetime, facts: CycleFacts) -> datetime:
    return moment.astimezone(ZoneInfo(facts.timezone))


def last_disinfection(facts: CycleFacts, stage: Stage) -> tuple[datetime, StepKind] | None:
    """When the cycle's latest disinfection, sterilisation or washer cycle ended, and which."""
    ends: list[tuple[datetime, StepKind]] = [
        (end, step.kind)
        for step in facts.steps
        if step.kind in DISINFECTING
        if (end := end_of(step, stage, facts.use_at)) is not None
    ]
    ends += [(washer.ended_at, StepKind.MACHINE_WASH) for washer in facts.washers]
    return max(ends, key=lambda pair: pair[0], default=None)


def check_daily(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """At use, a disinfected (not sterilised) scope was disinfected on the day of use."""
    if stage != "use" or facts.use_at is None:
        return
    last = last_disinfection(facts, stage)
    if last is None or last[1] is StepKind.STERILIZE:
        return
    done, today = _local(last[0], facts).date(), _local(facts.use_at, facts).date()
    if done < today:
        yield Finding(
            "daily_redisinfection",
            f"内镜上次消毒于 {done.isoformat()}，当日首次使用前应再次消毒、终末漂洗、干燥"
            f" / last disinfected on {done.isoformat()}: disinfect again before the first use"
            f" on {today.isoformat()}",
            {"disinfected_on": done.isoformat(), "used_on": today.isoformat()},
        )


def check_storage(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """At use, no longer than `storage_max_hours` has passed since the disinfection."""
    limit = config.storage_max_hours
    if stage != "use" or facts.use_at is None or limit is None:
        return
    last = last_disinfection(facts, stage)
    if last is None:
        return
    hours = (facts.use_at - last[0]).total_seconds() / 3600
    if hours > limit:
        yield Finding(
            "storage_time",
            f"消毒后已储存 {hours:.1f} h，超过 {limit:g} h / stored {hours:.1f} h"
            f" since disinfection > {limit:g} h",
            {"hours": round(hours, 2), "limit_hours": limit},
        )


def check_washers(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Each washer cycle passed, with no failed leak test, error code or failed channel."""
    for washer in facts.washers:
        zh: list[str] = []
        en: list[str] = []
        if washer.result != "pass":
            zh.append("结果不合格")
            en.append("result fail")
        if washer.leak_test == "fail":
            zh.append("测漏不合格")
            en.append("leak test failed")
        if washer.error_code:
            zh.append(f"故障码 {washer.error_code}")
            en.append(f"error code {washer.error_code}")
        if washer.failed_channels:
            channels = ", ".join(washer.failed_channels)
            zh.append(f"管道异常 {channels}")
            en.append(f"failed channels {channels}")
        if zh:
            yield Finding(
                "washer_failure",
                f"清洗消毒机 {washer.washer} 第 {washer.cycle_number} 次：{'，'.join(zh)}"
                f" / washer {washer.washer} cycle {washer.cycle_number}: {', '.join(en)}",
                {
                    "washer": washer.washer,
                    "cycle_number": washer.cycle_number,
                    "result": washer.result,
                    "leak_test": washer.leak_test,
                    "error_code": washer.error_code,
                    "failed_channels": list(washer.failed_channels),
                },
            )


def check_systems(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """No washer reserved for one system (digestive, respiratory) took a scope of another."""
    for washer in facts.washers:
        reserved = washer.washer_system
        if reserved is None or reserved == facts.system:
            continue
        yield Finding(
            "system_separation",
            f"{SYSTEM_NAMES[facts.system]}系统内镜使用了{SYSTEM_NAMES[reserved]}系统专用清洗消毒机"
            f" {washer.washer} / {facts.system} scope in washer {washer.washer}"
            f" reserved for {reserved} scopes",
            {"washer": washer.washer, "washer_system": reserved, "scope_system": facts.system},
        )


def _disinfection_start(facts: CycleFacts) -> datetime | None:
    starts = [s.started_at for s in facts.steps if s.kind in DISINFECTING]
    starts += [w.started_at for w in facts.washers]
    return min(starts, default=None)


def check_batches(facts: CycleFacts, config: RulesConfig, stage: Stage) -> Iterator[Finding]:
    """Each batch used had a passing concentration test within `batch_test_hours` before use."""
    tests = {test.ratio_number: test for test in facts.batch_tests}
    start = _disinfection_start(facts)
    for batch in dict.fromkeys(facts.batches_used):
        test = tests.get(batch)
        if test is None:
            yield Finding(
                "batch_monitoring",
                f"消毒剂批次 {batch} 无浓度监测记录 / batch {batch}: no concentration test",
                {"batch": batch},
            )
            continue
        tested = _local(test.tested_at, facts).strftime("%Y-%m-%d %H:%M")
        if not test.passed:
            yield Finding(
                "batch_monitoring",
                f"消毒剂批次 {batch} 浓度监测不合格（{tested}）"
                f" / batch {batch}: concentration test failed at {tested}",
                {"batch": batch, "tested_at": test.tested_at.isoformat(), "passed": False},
            )
            continue
        if start is None:
            continue
        age = (start - test.tested_at).total_seconds() / 3600
        if age > config.batch_test_hours:
            yield Finding(
                "batch_monitoring",
                f"消毒剂批次 {batch} 浓度监测已 {age:.1f} h（{tested}），应 ≤ "
                f"{config.batch_test_hours:g} h / batch {batch}: last concentration test"
                f" {age:.1f} h before use > {config.batch_test_hours:g} h",
                {"batch": batch, "tested_at": test.tested_at.isoformat(), "hours": round(age, 2)},
            )
