"""[domains.<name>.rules]: the thresholds of the WS 507-2016 rules and per-rule severities."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from agent.config import Section
from agent.reprocessing.facts import ScopeSystem
from agent.reprocessing.rules.catalogue import RULES
from agent.vocabulary.steps import Disinfectant

Minutes = Annotated[float, Field(gt=0)]
RequiredStep = Literal[
    "pre_clean", "leak_test", "clean", "rinse", "disinfect", "final_rinse", "dry", "store"
]
"""A logical step: `clean` is met by clean or enzyme, `disinfect` by disinfect or sterilize."""


class ContactMinutes(Section):
    """Minimum disinfection contact time per disinfectant, minutes (WS 507-2016 附录B)."""

    opa: Minutes | None = 5.0
    glutaraldehyde: Minutes | None = 10.0
    glutaraldehyde_respiratory: Minutes | None = 20.0  # bronchoscopes (system "respiratory")
    peracetic_acid: Minutes | None = 5.0
    chlorine_dioxide: Minutes | None = 3.0
    acidic_oxidising_water: Minutes | None = 3.0
    custom: Minutes | None = None  # None: not checked (follow the product's instructions)

    def minimum(self, agent: Disinfectant, system: ScopeSystem) -> float | None:
        """The minimum for this agent on a scope of this system; None when not checked."""
        if agent is Disinfectant.GLUTARALDEHYDE and system == "respiratory":
            return self.glutaraldehyde_respiratory
        value: float | None = getattr(self, agent.value)
        return value


class SterilizeMinutes(Section):
    """Minimum sterilisation immersion per sterilant, minutes (WS 507-2016 附录B)."""

    glutaraldehyde: Minutes | None = 600.0  # 10 h
    peracetic_acid: Minutes | None = 10.0
    custom: Minutes | None = None  # None: not checked

    def minimum(self, agent: Disinfectant) -> float | None:
        """The minimum for this sterilant; None for agents 附录B lists no sterilisation for."""
        value: float | None = getattr(self, agent.value, None)
        return value


class RulesConfig(Section):
    """Thresholds and severities of the reprocessing rules; defaults follow WS 507-2016."""

    required_steps: tuple[RequiredStep, ...] = ("clean", "rinse", "disinfect", "final_rinse", "dry")
    contact_minutes: ContactMinutes = ContactMinutes()
    sterilize_minutes: SterilizeMinutes = SterilizeMinutes()
    glutaraldehyde_min_pct: Annotated[float, Field(gt=0, le=100)] = 2.0
    final_rinse_minutes: Minutes = 2.0
    use_to_clean_minutes: Minutes = 60.0
    storage_max_hours: Annotated[float, Field(gt=0)] | None = None  # None: no limit
    batch_test_hours: Annotated[float, Field(gt=0)] = 24.0
    severity: dict[str, Literal["error", "warning", "off"]] = {}

    @field_validator("severity")
    @classmethod
    def _known_rules(
        cls, value: dict[str, Literal["error", "warning", "off"]]
    ) -> dict[str, Literal["error", "warning", "off"]]:
        unknown = sorted(set(value) - set(RULES))
        if unknown:
            raise ValueError(
                f"unknown rule {', '.join(unknown)}; known rules: {', '.join(sorted(RULES))}"
            )
        return value
