"""[domains.<name>] type = "lab": lab reports and sharing records, and which uplinks get them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from agent.config import PluginSection


class Offer(StrEnum):
    """One kind of message the lab domain can queue; an uplink's plan names those it wants."""

    REPORTS = (
        "lab.reports"  # an audited lab report (`lab.report`), then its results (`lab.results`)
    )
    FILES = "lab.files"  # its PDFs, after it (`lab.pdf`)
    DEVICES = "lab.devices"  # a lab device, again when changed (`lab.device`)
    QC = "lab.qc"  # a QC run (`lab.qc`)
    RECOGNITIONS = "lab.recognitions"  # `exam.recognition` or `lab.recognition`
    VIEWINGS = "lab.viewings"  # a reminder or viewing record (`sharing.viewing`)
    ITEM_CODES = "lab.item_codes"  # the item catalogue when it changes (`item.codes`)


ALL = frozenset(Offer)


class LabConfig(PluginSection):
    """The lab domain: what the LIS and HIS post, forwarded to each uplink by its plan."""

    forward_to: list[str] = []  # uplinks (each gets what its type's plan asks of the lab domain)
    # Reports (with their PDFs) and the other lab records go record_days after they last
    # changed (run by [journal]'s keeper), never while a message carrying them is still open.
    record_days: Annotated[int, Field(ge=1)] = 1096
    _plans: dict[str, frozenset[Offer]] | None = PrivateAttr(default=None)

    def uplinks_used(self) -> list[str]:
        """The uplinks lab records go to."""
        return list(self.forward_to)

    def plans(self) -> dict[str, frozenset[Offer]]:
        """What each forward_to uplink receives (everything if loaded without plans)."""
        if self._plans is not None:
            return dict(self._plans)
        return dict.fromkeys(self.forward_to, ALL)

    @model_validator(mode="after")
    def _resolve_plans(self, info: ValidationInfo) -> Self:
        uplink_plans = (info.context or {}).get("uplink_plans")
        if uplink_plans is None:
            return self
        resolved = {
            u: frozenset(Offer(o) for o in uplink_plans[u] if o in ALL)
            for u in self.forward_to
            if u in uplink_plans
        }
        idle = [u for u, offers in resolved.items() if not offers]
        if idle:
            raise ValueError(
                f"forward_to: {', '.join(idle)}: the uplink's type takes nothing of the lab"
                " domain; remove it from forward_to"
            )
        self._plans = resolved
        return self

    @field_validator("forward_to")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"must be unique, repeated: {', '.join(repeated)}")
        return value
