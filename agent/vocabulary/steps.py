"""Reprocessing vocabulary shared by washer drivers and the domain: step kinds, disinfectants."""

from __future__ import annotations

from enum import StrEnum


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
