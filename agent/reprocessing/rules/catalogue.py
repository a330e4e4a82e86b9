"""The rule catalogue: each rule's WS 507-2016 clause, default severity and config keys."""

from __future__ import annotations

from dataclasses import dataclass

from agent.reprocessing.facts import Severity
from agent.vocabulary.steps import Disinfectant


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What a rule checks, where the standard says so, and what tunes it."""

    clause: str
    severity: Severity  # 应 → "error", 宜 (or a figure from outside the standard) → "warning"
    description: str
    config_keys: tuple[str, ...] = ()


RULES: dict[str, RuleInfo] = {
    "step_order": RuleInfo(
        "6.2, 6.3.1",
        "error",
        "steps in the order pre-clean, leak test, clean, rinse, disinfect, final rinse, dry, store",
    ),
    "missing_step": RuleInfo(
        "6.2, 6.3.1",
        "error",
        "every required step is present when the scope is stored or used",
        ("required_steps",),
    ),
    "leak_test": RuleInfo(
        "6.1.4 a) 1)",
        "warning",
        "a leak test in each cycle (宜每次清洗前测漏)",
    ),
    "contact_time": RuleInfo(
        "附录B",
        "error",
        "disinfection / sterilisation lasted at least the minimum for the agent and scope system",
        ("contact_minutes", "sterilize_minutes"),
    ),
    "disinfectant_unknown": RuleInfo(
        "附录B",
        "warning",
        "a disinfect step whose disinfectant is not known cannot be timed",
    ),
    "concentration": RuleInfo(
        "附录B",
        "error",
        "glutaraldehyde used at no less than its minimum concentration",
        ("glutaraldehyde_min_pct",),
    ),
    "final_rinse_time": RuleInfo(
        "6.2.6 c)",
        "error",
        "a manual final rinse lasted at least the minimum",
        ("final_rinse_minutes",),
    ),
    "use_to_clean_delay": RuleInfo(
        "6.2.1 (立即); 60 min: 中国消化内镜再处理专家共识 2024",
        "warning",
        "cleaning started soon enough after the scope's use",
        ("use_to_clean_minutes",),
    ),
    "daily_redisinfection": RuleInfo(
        "6.1.4",
        "error",
        "a disinfected scope is disinfected again on the day before its first use",
    ),
    "storage_time": RuleInfo(
        "院内规定 (not in WS 507)",
        "error",
        "a scope is not used longer than the hospital's limit after its disinfection",
        ("storage_max_hours",),
    ),
    "washer_failure": RuleInfo(
        "6.3, 7.4",
        "error",
        "each washer cycle passed: result, leak test, error code and channels",
    ),
    "system_separation": RuleInfo(
        "5.3.5",
        "error",
        "a scope is not reprocessed in a washer reserved for another system",
    ),
    "batch_monitoring": RuleInfo(
        "7.2.1 b)",
        "error",
        "each disinfectant batch used had a passing concentration test recently enough",
        ("batch_test_hours",),
    ),
}


AGENT_NAMES: dict[Disinfectant, str] = {
    Disinfectant.OPA: "邻苯二甲醛",
    Disinfectant.GLUTARALDEHYDE: "戊二醛",
    Disinfectant.PERACETIC_ACID: "过氧乙酸",
    Disinfectant.CHLORINE_DIOXIDE: "二氧化氯",
    Disinfectant.ACIDIC_OXIDISING_WATER: "酸性氧化电位水",
    Disinfectant.CUSTOM: "其他消毒剂",
}
