"""Quality records people enter: journaled in `quality_tests`, sent to the platform, alerted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from agent.events import Event
from agent.journal.alerts import Alert, Severity
from agent.reprocessing.config import QualityConfig, ReprocessingConfig
from agent.reprocessing.facts import Violation
from agent.reprocessing.records import RecordBuilder
from agent.reprocessing.state import scope_states
from agent.reprocessing.verdicts import record_violation
from agent.vocabulary.steps import Disinfectant

if TYPE_CHECKING:
    from agent.journal.transaction import Transaction

DISINFECTANT_TEST = "quality.disinfectant_test"
RINSE_WATER = "quality.rinse_water"
CLEANING_EFFECT = "quality.cleaning_effect"
# event kind -> (quality_tests.kind, platform endpoint)
KINDS: Final = {
    DISINFECTANT_TEST: ("disinfectant", "uploadDisinfectData"),
    RINSE_WATER: ("rinse_water", "rinseWater"),
    CLEANING_EFFECT: ("cleaning_effect", "cleaningEffectTesting"),
}


class QualityHandler:
    """Handles disinfectant tests, rinse-water checks and cleaning-effect tests."""

    kinds = tuple(KINDS)

    def __init__(self, name: str, config: ReprocessingConfig, quality: QualityConfig) -> None:
        self.name = name
        self.uplink = config.uplink
        self.records = RecordBuilder(config)
        self.quality = quality
        self.scopes = {scope.number: scope for scope in config.endoscopes}

    def handle(self, tx: Transaction, event: Event) -> None:
        """Journal the record once per event, queue its platform record, alert on a failure."""
        table_kind, endpoint = KINDS[event.kind]
        payload = event.payload
        tested_at = self._instant(str(payload["tested_at"]))
        if event.kind == DISINFECTANT_TEST:
            subject = str(payload["ratio_number"])
            passed = bool(payload["passed"])
            record = self.disinfectant_record(payload, tested_at)
        elif event.kind == RINSE_WATER:
            subject = str(payload["device"])
            passed = payload["status"] == "normal"
            record = self.rinse_water_record(payload)
        else:
            subject = str(payload["scope"])
            passed = bool(payload["passed"])
            record = self.cleaning_effect_record(payload, tested_at)
        recorded_by = str(payload.get("recorded_by") or payload.get("inspector") or "")
        fresh = tx.conn.execute(
            "INSERT OR IGNORE INTO quality_tests (kind, subject, tested_at, passed, recorded_by,"
            " payload, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                table_kind,
                subject,
                tested_at.astimezone(UTC).isoformat(),
                int(passed),
                recorded_by,
                json.dumps(payload, ensure_ascii=False, sort_keys=True),
                event.id,
            ),
        ).rowcount
        if not fresh:
            return  # the same event again: everything it implies is already there
        tx.enqueue(
            uplink=self.uplink,
            kind=endpoint,
            order_key=f"quality:{table_kind}:{subject}",
            dedupe_key=f"{endpoint}:{event.id}",
            payload=record,
        )
        for alert in self.alerts(event, subject):
            tx.raise_alert(alert)  # raise_alert, and wakes the alert routes' uplinks
        if event.kind == CLEANING_EFFECT and not passed:
            self._block(tx, subject, tested_at)

    def _block(self, tx: Transaction, number: str, tested_at: datetime) -> None:
        """WS 507 §7.1: a scope whose channels failed the cleaning test must be reprocessed."""
        row = tx.conn.execute(
            "SELECT clean_id FROM rp_scopes WHERE number = ?", (number,)
        ).fetchone()
        if row is None or row[0] is None:
            return
        violation = Violation(
            "cleaning_effect",
            "7.1",
            "error",
            "管路清洗效果检测不合格，应重新处理 / channel cleaning-effect test failed:"
            " reprocess the scope",
        )
        record_violation(tx.conn, row[0], violation, tested_at.isoformat(), tx.event_id)
        # Again after an override: a second failed test blocks the scope once more.
        tx.conn.execute(
            "UPDATE rp_cycles SET compliance = 'non_compliant' WHERE clean_id = ?", (row[0],)
        )
        for state in scope_states(tx.conn, number):
            tx.publish("scope.state", number, {**state, "topic_suffix": number})

    def disinfectant_record(self, payload: dict[str, Any], tested_at: datetime) -> dict[str, Any]:
        """uploadDisinfectData: a concentration test of a disinfectant batch."""
        record: dict[str, Any] = {
            **self.records.institution,
            "ratio_number": payload["ratio_number"],
            "duration_min": payload["duration_minutes"],
            "disinfectant": Disinfectant(payload["disinfectant"]).value,
        }
        photos = payload.get("photos") or []
        if photos:
            record["photo_url"] = self.quality.photo_url(photos[0])
        return record | {
            "tested_at": self.records.time(tested_at),
            "frequency": str(payload["frequency"]),
            "result": "pass" if payload["passed"] else "fail",
        }

    def rinse_water_record(self, payload: dict[str, Any]) -> dict[str, Any]:
        """rinseWater: the final-rinse water device's status (and its filter's)."""
        record: dict[str, Any] = {
            **self.records.institution,
            "device": payload["device"],
            "status": payload["status"],
        }
        if payload.get("filter"):
            record["filter"] = payload["filter"]
        return record

    def cleaning_effect_record(
        self, payload: dict[str, Any], tested_at: datetime
    ) -> dict[str, Any]:
        """cleaningEffectTesting: a channel cleaning-effect test of one scope, 1-3 photos."""
        number = str(payload["scope"])
        scope = self.scopes.get(number)
        # A configured scope is named as every other record names it (scope_ref, or the
        # uplink's choice among its names); an unknown one by the number entered.
        names = self.records.scope_names(scope) if scope is not None else {"scope_ref": number}
        record: dict[str, Any] = {
            **self.records.institution,
            **names,
            "tested_at": self.records.time(tested_at),
            "inspector": payload["inspector"],
        }
        for n, photo in enumerate(payload.get("photos") or [], start=1):
            record[f"photo_url_{n}"] = self.quality.photo_url(photo)
        record["result"] = "pass" if payload["passed"] else "fail"
        return record

    def alerts(self, event: Event, subject: str) -> list[Alert]:
        """What a person must see about this record: failures, a fault, a filter to replace."""
        payload, origin = event.payload, f"event:{event.id}"

        def alert(severity: Severity, code: str, where: str, message: str) -> Alert:
            return Alert(code, where, message, origin, severity)

        found: list[Alert] = []
        if event.kind == DISINFECTANT_TEST and not payload["passed"]:
            found.append(
                alert(
                    "error",
                    "disinfectant_test_failed",
                    f"batch:{subject}",
                    f"disinfectant batch {subject} failed its concentration test"
                    " / 消毒剂浓度监测不合格",
                )
            )
        elif event.kind == RINSE_WATER:
            if payload["status"] == "fault":
                found.append(
                    alert(
                        "error",
                        "rinse_water_device_fault",
                        f"water:{subject}",
                        f"final-rinse water device {subject} is faulty / 终末漂洗水制水设备故障",
                    )
                )
            if payload.get("filter") == "replace":
                found.append(
                    alert(
                        "warning",
                        "rinse_water_filter_replace",
                        f"water:{subject}",
                        f"the filter of water device {subject} must be replaced / 消毒滤芯需更换",
                    )
                )
        elif event.kind == CLEANING_EFFECT and not payload["passed"]:
            found.append(
                alert(
                    "error",
                    "cleaning_effect_failed",
                    f"scope:{subject}",
                    f"scope {subject} failed its channel cleaning-effect test"
                    " / 内镜管路清洗效果检测不合格",
                )
            )
        return found

    def _instant(self, text: str) -> datetime:
        """An ISO time; one without an offset is the centre's local time."""
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.records.zone)
        return moment
