"""Build the Zhejiang platform's records (seed 000 field names) from reprocessing facts."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.reprocessing.config import Endoscope, ReprocessingConfig, Washer
from agent.vocabulary.steps import STEP_NAMES, StepKind

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
    """Turns times, scopes and stations into platform payloads; knows the institution."""

    def __init__(self, config: ReprocessingConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.institution = {
            "uniqueCode": config.institution.unique_code,
            "creditCode": config.institution.credit_code,
        }

    def time(self, moment: datetime) -> str:
        """The platform's DT: local `yyyy-MM-dd HH:mm:ss`."""
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def scope_ref(self, scope: Endoscope) -> str:
        """What the records' `rfidNumber` field carries for this scope."""
        return scope.rfid if self.config.scope_ref == "rfid" else scope.number

    def read_data(
        self, clean_id: str, at: datetime, scope: Endoscope, reader_id: str, user: str
    ) -> dict[str, Any]:
        """uploadReadData: a non-use tap (or washer phase) at the platform's reader `reader_id`."""
        return {
            "cleanId": clean_id,
            "collectionTime": self.time(at),
            "deviceRfidNumber": scope.rfid,
            "readerId": reader_id,
            "uploadUser": user,
            **self.institution,
        }

    def use_step(
        self, clean_id: str, scope: Endoscope, patient_id: str, patient_name: str, user: str
    ) -> dict[str, Any]:
        """uploadUseStepData: the scope used on a patient after cycle `clean_id`."""
        payload = {"cleanId": clean_id, "identityId": patient_id, "number": scope.number}
        if patient_name:
            payload["name"] = patient_name
        return {**payload, "uploadUser": user, **self.institution}

    def enzyme_wash(
        self,
        clean_id: str,
        scope: Endoscope,
        user: str,
        span: tuple[datetime, datetime],
        temperature_c: float | None = None,
    ) -> dict[str, Any]:
        """uploadEnzymeWashData: the enzyme step's start and end (and temperature, if known)."""
        payload: dict[str, Any] = {
            "rfidNumber": self.scope_ref(scope),
            "userName": user,
            "cleanId": clean_id,
            "startTime": self.time(span[0]),
            "endTime": self.time(span[1]),
        }
        if temperature_c is not None:
            payload["temp"] = f"{temperature_c:g}"
        return {**payload, **self.institution}

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
        """sterProcess: a disinfection (`agent_type` 0) or sterilisation (1) step."""
        payload: dict[str, Any] = {
            "cleanId": clean_id,
            "rfidNumber": self.scope_ref(scope),
            "userName": user,
            "startTime": self.time(span[0]),
            "endTime": self.time(span[1]),
            "type": agent_type,
        }
        if ratio_number:
            payload["ratioNumber"] = ratio_number
        return {**payload, **self.institution}

    def endoscope_save(
        self, cabinet: str, scope: Endoscope, stored: datetime, taken: datetime
    ) -> dict[str, Any]:
        """endoscopeSave: a stay in a storage cabinet, sent when the scope is taken out."""
        return {
            "storagetNumber": cabinet,
            "rfidNumber": self.scope_ref(scope),
            "storeTime": self.time(stored),
            "takeoutTime": self.time(taken),
            **self.institution,
        }

    def master_data(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, key, payload) for every scope, reader and step the platform must know."""
        records: list[tuple[str, str, dict[str, Any]]] = []
        for scope in self.config.endoscopes:
            optional = {
                "typeName": scope.type_name,
                "model": scope.brand,
                "steelNumber": scope.steel_number,
                "aliasName": scope.alias,
                "buyDate": scope.buy_date.strftime("%Y-%m-%d 00:00:00") if scope.buy_date else "",
                "durableYears": scope.durable_years,
            }
            payload = {
                "number": scope.number,
                "rfidNumber": scope.rfid,
                **{k: v for k, v in optional.items() if v not in ("", None)},
                "status": scope.status,
                **self.institution,
            }
            records.append(("addEndoSocopeInfo", scope.number, payload))
        steps: dict[int, dict[str, Any]] = {}
        for station in self.config.stations:
            records.append(
                (
                    "addCardReaderInfo",
                    station.platform_reader_id,
                    {
                        "rfidNumber": station.platform_reader_id,
                        "stepId": str(station.step_id),
                        "stepName": station.name,
                        "status": 0,
                        **self.institution,
                    },
                )
            )
            step: dict[str, Any] = {
                "stepId": station.step_id,
                "stepName": station.name,
                "orderId": station.order,
            }
            if station.min_interval is not None:
                step["orderTime"] = station.min_interval
            if station.parent:
                step["parentId"] = station.parent
            steps.setdefault(station.step_id, {**step, **self.institution})
        for washer in self.config.washers:
            order = self._washer_order(washer)
            for kind, step_id in washer.phase_steps.items():
                reader = phase_reader(washer, kind)
                step = {"stepId": step_id, "stepName": STEP_NAMES[kind], "orderId": order}
                records.append(
                    (
                        "addCardReaderInfo",
                        reader,
                        {
                            "rfidNumber": reader,
                            "stepId": str(step_id),
                            "stepName": STEP_NAMES[kind],
                            "status": 0,
                            **self.institution,
                        },
                    )
                )
                steps.setdefault(step_id, {**step, **self.institution})
        records.extend(("addCleanStepInfo", str(k), v) for k, v in steps.items())
        return records

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
