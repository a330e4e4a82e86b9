"""Build the domain's neutral records (agent.vocabulary.records) from reprocessing facts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.reprocessing.config import Endoscope, ReprocessingConfig, Washer
from agent.vocabulary.records import REPROCESSING_RECORDS
from agent.vocabulary.steps import STEP_NAMES, StepKind

AGENTS = ("disinfectant", "sterilant")  # agent_type 0 and 1
CLEAN_ID_MAX = 64  # uploadEnzymeWashData and sterProcess allow S..64 (the 100 is looser)


def make_clean_id(number: str, opened_at: datetime, seq: int) -> str:
    """A cycle's cleanId: `<scope number>-<YYYYMMDDHHMMSS>-<n>`, unique, readable, ≤ 64 chars."""
    stamp = opened_at.strftime("%Y%m%d%H%M%S")
    clean_id = f"{number}-{stamp}-{seq}"
    if len(clean_id) > CLEAN_ID_MAX:
        digest = hashlib.sha1(number.encode(), usedforsecurity=False).hexdigest()[:8]
        room = CLEAN_ID_MAX - len(f"~{digest}-{stamp}-{seq}")
        clean_id = f"{number[:room]}~{digest}-{stamp}-{seq}"
    return clean_id


class RecordBuilder:
    """Turns times, scopes and stations into neutral records (agent.vocabulary.records)."""

    def __init__(self, config: ReprocessingConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.institution: dict[str, Any] = {"vocabulary": REPROCESSING_RECORDS}
        if config.institution is not None:  # else the uplink adds its own codes
            self.institution["institution_code"] = config.institution.unique_code
            self.institution["institution_credit_code"] = config.institution.credit_code

    def time(self, moment: datetime) -> str:
        """ISO 8601 in the domain's zone: the wall clock the platform is sent, with its offset."""
        return moment.astimezone(self.zone).replace(microsecond=0).isoformat()

    def scope_ref(self, scope: Endoscope) -> str:
        """How the records name this scope where the platform takes either (scope_ref)."""
        return scope.rfid if self.config.scope_ref == "rfid" else scope.number

    def scope_names(self, scope: Endoscope) -> dict[str, str]:
        """The scope by every name, for an uplink choosing per record kind (`scope_ref` is the
        domain's choice): number, RFID and, when configured, steel (钢印) number."""
        names = {
            "scope_ref": self.scope_ref(scope),
            "scope_number": scope.number,
            "scope_rfid": scope.rfid,
        }
        if scope.steel_number:
            names["scope_steel_number"] = scope.steel_number
        return names

    def read_data(
        self, clean_id: str, at: datetime, scope: Endoscope, reader_id: str, user: str
    ) -> dict[str, Any]:
        """A non-use tap (or washer phase) at the platform's reader `reader_id`."""
        return {
            **self.institution,
            "cycle_id": clean_id,
            "at": self.time(at),
            "scope_rfid": scope.rfid,
            "reader_id": reader_id,
            "user": user,
        }

    def use_step(
        self, clean_id: str, scope: Endoscope, patient_id: str, patient_name: str, user: str
    ) -> dict[str, Any]:
        """The scope used on a patient after cycle `clean_id`."""
        record = {
            **self.institution,
            "cycle_id": clean_id,
            "patient_id": patient_id,
            "scope_number": scope.number,
            "user": user,
        }
        if patient_name:
            record["patient_name"] = patient_name
        return record

    def enzyme_wash(
        self,
        clean_id: str,
        scope: Endoscope,
        user: str,
        span: tuple[datetime, datetime],
        temperature_c: float | None = None,
    ) -> dict[str, Any]:
        """The enzyme step's start and end (and temperature, if known)."""
        record = self._step(clean_id, scope, user, span)
        if temperature_c is not None:
            record["temperature_c"] = f"{temperature_c:g}"
        return record

    def ster_process(
        self,
        clean_id: str,
        scope: Endoscope,
        *,
        agent_type: int,
        user: str,
        span: tuple[datetime, datetime],
        ratio_number: str,
    ) -> dict[str, Any]:
        """A disinfection (`agent_type` 0) or sterilisation (1) step."""
        record = {**self._step(clean_id, scope, user, span), "agent": AGENTS[agent_type]}
        if ratio_number:
            record["ratio_number"] = ratio_number
        return record

    def _step(
        self, clean_id: str, scope: Endoscope, user: str, span: tuple[datetime, datetime]
    ) -> dict[str, Any]:
        return {
            **self.institution,
            "cycle_id": clean_id,
            **self.scope_names(scope),
            "user": user,
            "started_at": self.time(span[0]),
            "ended_at": self.time(span[1]),
        }

    def endoscope_save(
        self, cabinet: str, scope: Endoscope, stored: datetime, taken: datetime
    ) -> dict[str, Any]:
        """A stay in a storage cabinet, sent when the scope is taken out."""
        return {
            **self.institution,
            "cabinet": cabinet,
            **self.scope_names(scope),
            "stored_at": self.time(stored),
            "taken_at": self.time(taken),
        }

    def master_data(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, key, record) for every scope, reader and step the platform must know."""
        records: list[tuple[str, str, dict[str, Any]]] = []
        for scope in self.config.endoscopes:
            optional = {
                "type_name": scope.type_name,
                "brand": scope.brand,
                "steel_number": scope.steel_number,
                "alias": scope.alias,
                "bought_on": scope.buy_date.isoformat() if scope.buy_date else "",
                "durable_years": scope.durable_years,
            }
            record = {
                **self.institution,
                "scope_number": scope.number,
                "scope_rfid": scope.rfid,
                **{k: v for k, v in optional.items() if v not in ("", None)},
                "scope_status": scope.status,
            }
            records.append(("addEndoSocopeInfo", scope.number, record))
        steps: dict[int, dict[str, Any]] = {}
        for station in self.config.stations:
            records.append(
                (
                    "addCardReaderInfo",
                    station.platform_reader_id,
                    self._reader(station.platform_reader_id, station.step_id, station.name),
                )
            )
            step: dict[str, Any] = {
                **self.institution,
                "step_id": station.step_id,
                "step_name": station.name,
                "order": station.order,
            }
            if station.min_interval is not None:
                step["min_interval_s"] = station.min_interval
            if station.parent:
                step["parent"] = station.parent
            steps.setdefault(station.step_id, step)
        for washer in self.config.washers:
            order = self._washer_order(washer)
            for kind, step_id in washer.phase_steps.items():
                reader = phase_reader(washer, kind)
                records.append(
                    ("addCardReaderInfo", reader, self._reader(reader, step_id, STEP_NAMES[kind]))
                )
                steps.setdefault(
                    step_id,
                    {
                        **self.institution,
                        "step_id": step_id,
                        "step_name": STEP_NAMES[kind],
                        "order": order,
                    },
                )
        records.extend(("addCleanStepInfo", str(k), v) for k, v in steps.items())
        return records

    def _reader(self, reader: str, step_id: int, step_name: str) -> dict[str, Any]:
        return {**self.institution, "reader_id": reader, "step_id": step_id, "step_name": step_name}

    def _washer_order(self, washer: Washer) -> int:
        """A washer's phases sit where its machine-wash station sits in the step order."""
        orders = [s.order for s in self.config.stations if s.washer == washer.id]
        return orders[0] if orders else 0


def phase_reader(washer: Washer, kind: StepKind) -> str:
    """The platform reader id a washer phase with its own step id is reported from."""
    return f"{washer.id}-{kind.value}"


def content_key(kind: str, key: str, payload: dict[str, Any]) -> str:
    """A dedupe key that changes exactly when the record's content changes."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{kind}:{key}:{digest}"


def fed_values(config: ReprocessingConfig) -> Iterator[tuple[str, str, object]]:
    """(config key, record field, value) of everything the config feeds into records, for an
    uplink to check at start (the institution codes and photo base URL too)."""
    for i, station in enumerate(config.stations):
        key = f"stations.{i}"
        yield f"{key}.name", "step_name", station.name
        yield f"{key}.step_id", "step_id", station.step_id
        yield f"{key}.order", "order", station.order
        yield f"{key}.reader_rfid", "reader_id", station.platform_reader_id
        yield f"{key}.parent", "parent", station.parent
        yield f"{key}.cabinet", "cabinet", station.cabinet
        yield f"{key}.ratio_number", "ratio_number", station.ratio_number
        if station.min_interval is not None:
            yield f"{key}.min_interval", "min_interval_s", station.min_interval
    ref = "rfid" if config.scope_ref == "rfid" else "number"
    for i, scope in enumerate(config.endoscopes):
        key = f"endoscopes.{i}"
        yield f"{key}.number", "scope_number", scope.number
        yield f"{key}.rfid", "scope_rfid", scope.rfid
        yield f"{key}.{ref}", "scope_ref", getattr(scope, ref)
        yield f"{key}.steel_number", "scope_steel_number", scope.steel_number
        for name in ("type_name", "brand", "steel_number", "alias"):
            yield f"{key}.{name}", name, getattr(scope, name)
    for i, badge in enumerate(config.staff):
        yield f"staff.{i}.{config.upload_user}", "user", getattr(badge, config.upload_user)
    yield "default_upload_user", "user", config.default_upload_user
    for i, washer in enumerate(config.washers):
        for kind, step_id in washer.phase_steps.items():
            yield f"washers.{i}.id", "reader_id", phase_reader(washer, kind)
            yield f"washers.{i}.phase_steps.{kind}", "step_id", step_id
    if config.institution is not None:
        yield "institution.unique_code", "institution_code", config.institution.unique_code
        yield "institution.credit_code", "institution_credit_code", config.institution.credit_code
    yield "quality.photo_base_url", "photo_base_url", config.quality.photo_base_url
