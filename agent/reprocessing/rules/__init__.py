"""The WS 507-2016 rules engine: `evaluate` turns one cycle's facts into violations, without I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent.reprocessing.facts import CycleFacts, Severity, Stage, Violation
from agent.reprocessing.rules.catalogue import RULES, RuleInfo
from agent.reprocessing.rules.config import ContactMinutes, RulesConfig, SterilizeMinutes
from agent.reprocessing.rules.context import (
    check_batches,
    check_daily,
    check_storage,
    check_systems,
    check_washers,
)
from agent.reprocessing.rules.steps import (
    Finding,
    check_concentration,
    check_contact,
    check_delay,
    check_final_rinse,
    check_leak_test,
    check_missing,
    check_order,
)

__all__ = ["RULES", "ContactMinutes", "RuleInfo", "RulesConfig", "SterilizeMinutes", "evaluate"]

Check = Callable[[CycleFacts, RulesConfig, Stage], Iterator[Finding]]
CHECKS: tuple[Check, ...] = (
    check_order,
    check_missing,
    check_leak_test,
    check_contact,
    check_concentration,
    check_final_rinse,
    check_delay,
    check_daily,
    check_storage,
    check_washers,
    check_systems,
    check_batches,
)


def evaluate(facts: CycleFacts, config: RulesConfig, stage: Stage) -> list[Violation]:
    """The rules this cycle breaks at this stage, in a fixed order; "off" rules are left out."""
    violations = []
    for check in CHECKS:
        for finding in check(facts, config, stage):
            info = RULES[finding.rule]
            chosen = config.severity.get(finding.rule, info.severity)
            if chosen == "off":
                continue
            severity: Severity = "error" if chosen == "error" else "warning"
            violations.append(
                Violation(finding.rule, info.clause, severity, finding.message, finding.details)
            )
    return violations
