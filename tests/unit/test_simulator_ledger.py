"""A simulator's received list: filters, and what a state folder keeps across a restart."""

from __future__ import annotations

import json

from agent.simulators import ledger as ledger_module
from agent.simulators.ledger import RECEIVED_FILE, Ledger, load_state, save_state


def test_filters_select_by_kind_verdict_and_sequence():
    ledger = Ledger(None)
    ledger.add("push", "refused", 1, "系统繁忙", key="a")
    ledger.add("push", "accepted", 0, "", key="a", body={"x": 1})
    ledger.add("C-STORE", "accepted", 0, "", key="1.2.3")
    assert [a.seq for a in ledger.select(kind="push")] == [1, 2]
    assert [a.seq for a in ledger.select(verdict="accepted")] == [2, 3]
    assert [a.seq for a in ledger.select(after=2)] == [3]
    assert ledger.arrivals[0].at[-6] in "+-"  # ISO 8601 with its offset


def test_a_state_folder_keeps_the_list_even_with_a_line_cut_by_a_crash(tmp_path):
    first = Ledger(tmp_path)
    first.add("ingest", "accepted", 200, "", key="k1", body={"名": "值"})
    with (tmp_path / RECEIVED_FILE).open("a", encoding="utf-8") as fp:
        fp.write('{"seq": 2, "kind": "ing')  # killed mid-write
    again = Ledger(tmp_path)
    assert [(a.seq, a.key, a.body) for a in again.arrivals] == [(1, "k1", {"名": "值"})]
    assert again.add("ingest", "failed", 503, "busy").seq == 2
    assert [a.seq for a in Ledger(tmp_path).arrivals] == [1, 2]
    again.clear()
    assert Ledger(tmp_path).arrivals == []


def test_state_is_saved_atomically_and_private(tmp_path):
    assert load_state(tmp_path) == {}
    save_state(tmp_path, {"tokens": {"t": None}})
    assert load_state(tmp_path) == {"tokens": {"t": None}}
    saved = tmp_path / "state.json"
    assert saved.stat().st_mode & 0o077 == 0
    assert json.loads(saved.read_text(encoding="utf-8")) == {"tokens": {"t": None}}
    assert not list(tmp_path.glob("*.tmp"))


def test_memory_holds_the_newest_arrivals_and_numbering_goes_on(monkeypatch):
    monkeypatch.setattr(ledger_module, "KEPT", 3)
    ledger = Ledger(None)
    for _ in range(5):
        ledger.add("ingest", "accepted", 200, "")
    assert [a.seq for a in ledger.arrivals] == [3, 4, 5]
    assert ledger.add("ingest", "accepted", 200, "").seq == 6
