"""IDCAS settings fail at start naming the key (3DES key length, IV, RSA key format, page_sev);
the daily statistics' slots; print-flag and statistics messages, one per day."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from Crypto.PublicKey import RSA

from agent import toml_out
from agent.config import load_config
from agent.crypto import rsa
from agent.errors import ConfigError
from agent.events import Event
from agent.journal.database import open_database
from agent.journal.transaction import Transaction
from agent.plugins import PLUGIN_KINDS
from agent.uplinks.idcas_archive import statistics
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig

ZONE = ZoneInfo("Asia/Shanghai")


def settings(**changes: Any) -> dict[str, Any]:
    base = {
        "type": "idcas_archive",
        "auth_url": "http://idcas/auth",
        "gateway_url": "http://idcas/api",
        "doc_gateway_url": "http://idcas/doc",
        "portal_url": "https://portal",
        "org_code": "2470",
        "client_id": "c",
        "client_secret": "s",
        "username": "u",
        "password": "p",
        "des_key": "eWorldTomTaw#7=*",
        "md5_key": "TomtawMD5Key",
        "sev": "SEV",
    }
    return base | changes


def problems_of(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(toml_out.dumps({"uplinks": {"idcas": settings(**changes)}}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLUGIN_KINDS)
    return str(info.value)


@pytest.mark.parametrize("key", ["short", "eWorldTomTaw#7=*x", "x" * 25])
def test_a_3des_key_of_the_wrong_length_fails_the_start_naming_it(tmp_path, key):
    text = problems_of(tmp_path, des_key=key)
    assert "uplinks.idcas" in text and "des_key: a 3DES key of" in text
    assert key not in text  # the key itself is never echoed


def test_a_3des_key_from_a_secret_file_is_checked_too(tmp_path):
    (tmp_path / "des.key").write_text("twelve-bytes\n", encoding="utf-8")
    assert "des_key: a 3DES key of 12 bytes" in problems_of(tmp_path, des_key="file:des.key")


def test_an_rsa_key_in_an_unknown_format_fails_the_start_naming_it(tmp_path):
    text = problems_of(tmp_path, rsa_public_key="-----BEGIN NONSENSE-----")
    assert "rsa_public_key: not an RSA key" in text


def test_a_private_key_is_not_taken_for_the_public_one(tmp_path):
    pem = RSA.generate(1024).export_key().decode()
    assert "rsa_public_key: a private key" in problems_of(tmp_path, rsa_public_key=pem)


def test_iv_and_page_sev_are_checked(tmp_path):
    assert "des_iv: the 3DES IV must be 8 bytes" in problems_of(tmp_path, des_iv="short")
    assert "page_sev: no page nope" in problems_of(tmp_path, page_sev={"nope": "x"})


def test_a_good_config_pins_a_public_key_in_any_form():
    key = RSA.generate(1024)
    for text in (rsa.public_text(key), key.public_key().export_key().decode()):
        config = IdcasArchiveConfig.model_validate(settings(rsa_public_key=text))
        pinned = config.pinned_key()
        assert pinned is not None and pinned.n == key.n
    config = IdcasArchiveConfig.model_validate(settings())
    assert config.gateway("/api-idcas/x") == "http://idcas/api/api-idcas/x"
    assert config.link_keys().sev == "SEV"


def slot_config(**stats: Any) -> IdcasArchiveConfig:
    return IdcasArchiveConfig.model_validate(settings(statistics={"enabled": True, **stats}))


def test_a_days_slot_is_the_next_morning_local_time():
    config = slot_config()
    assert statistics.slot_of(config, date(2026, 12, 6)) == datetime(2026, 12, 7, 2, 0, tzinfo=ZONE)


def test_due_days_catch_up_after_downtime_oldest_first():
    config = slot_config(catch_up_days=3)
    before = datetime(2026, 12, 7, 1, 59, tzinfo=ZONE)
    after = datetime(2026, 12, 7, 2, 0, tzinfo=ZONE)
    assert statistics.due_days(config, before) == [date(2026, 12, 4), date(2026, 12, 5)]
    assert statistics.due_days(config, after) == [
        date(2026, 12, 4), date(2026, 12, 5), date(2026, 12, 6),
    ]  # fmt: skip
    assert statistics.seconds_to_next_slot(config, before) == 60.0
    assert statistics.seconds_to_next_slot(config, after) == 86400.0


def test_the_due_event_of_a_day_has_one_id():
    now = datetime(2026, 12, 7, 3, 0, tzinfo=ZONE)
    first = statistics.due_event("idcas", date(2026, 12, 6), now)
    assert first.id == statistics.due_event("idcas", date(2026, 12, 6), now.replace(hour=9)).id
    assert first.id != statistics.due_event("idcas", date(2026, 12, 5), now).id


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_database(tmp_path / "journal.db")


def handle(conn: sqlite3.Connection, handler: statistics.IdcasMessages, event: Event) -> None:
    handler.handle(Transaction(conn, event.id, set()), event)


def outbox(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute("SELECT kind, dedupe_key, payload FROM outbox ORDER BY id").fetchall()


def test_one_statistics_message_a_day_and_counts_posted_late_fill_it(conn):
    handler = statistics.IdcasMessages("idcas", slot_config(work_stations=40))
    now = datetime.now(ZONE)
    day = (now.date()).fromordinal(now.date().toordinal() - 2)
    handle(conn, handler, statistics.due_event("idcas", day, now))
    handle(conn, handler, statistics.due_event("idcas", day, now))
    ((kind, dedupe, payload),) = outbox(conn)
    assert (kind, dedupe) == ("idcas.statistics", f"statistics:{day}")
    assert '"patients_cnt":null' in payload and '"work_stations":40' in payload
    counts = Event(
        statistics.COUNTS, "api", {"uplink": "idcas", "day": str(day), "patients_cnt": 9}
    )
    handle(conn, handler, counts)
    ((_, _, payload),) = outbox(conn)
    assert '"patients_cnt":9' in payload


def test_counts_posted_before_the_slot_wait_for_it(conn):
    handler = statistics.IdcasMessages("idcas", slot_config(work_stations=40))
    today = datetime.now(ZONE).date()
    counts = Event(
        statistics.COUNTS, "api", {"uplink": "idcas", "day": str(today), "patients_cnt": 5}
    )
    handle(conn, handler, counts)
    due = conn.execute("SELECT next_attempt_at FROM outbox").fetchone()[0]
    assert due == statistics.slot_of(handler.config, today).timestamp()
    other = Event(
        statistics.COUNTS, "api", {"uplink": "other", "day": str(today), "patients_cnt": 5}
    )
    handle(conn, handler, other)  # another uplink's counts: not ours
    assert len(outbox(conn)) == 1


def test_relayed_visits_count_each_visit_once_on_its_day(conn):
    config = slot_config(source="relayed", work_stations=12)
    handler = statistics.IdcasMessages("idcas", config)
    day = datetime(2026, 12, 6, 9, 0, tzinfo=ZONE)
    events = [
        statistics.relayed_event("idcas", "V1", day),
        statistics.relayed_event("idcas", "V1", day.replace(hour=15)),  # the same visit again
        statistics.relayed_event("idcas", "V2", day.replace(hour=23, minute=59)),
        statistics.relayed_event("idcas", "V3", day + timedelta(days=1)),  # the next day
        statistics.relayed_event("other", "V4", day),  # another uplink's
    ]
    for n, event in enumerate(events):
        conn.execute(
            "INSERT INTO events (id, kind, source, occurred_at, received_at, payload)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (event.id, event.kind, event.source, "x", f"2026-12-06T{n:02d}:00:00+00:00",
             json.dumps(event.payload)),
        )  # fmt: skip
    assert "V1" not in json.dumps(events[0].payload)  # a digest, not the visit's id
    assert statistics.relayed_visits(conn, "idcas", day.date()) == 2
    handle(conn, handler, statistics.due_event("idcas", day.date(), day + timedelta(days=1)))
    ((_, _, payload),) = outbox(conn)
    assert '"patients_cnt":2' in payload and '"work_stations":12' in payload


def test_relayed_counts_need_the_work_stations():
    with pytest.raises(ValueError, match="work_stations is required when source is relayed"):
        slot_config(source="relayed")
