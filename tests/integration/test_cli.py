"""The operator's CLI against a real journal: status, outbox list/show/retry/discard."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.cli import _parser, main
from agent.events import Event
from agent.journal import outbox
from agent.journal.transaction import Transaction
from agent.journal.writer import Journal
from tests.unit.test_journal import Flaky


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose journal holds: uplink `cloud` with 1 delivered, 1 pending, 2 dead."""
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nstate_dir = "state"\n'
        '[uplinks.cloud]\ntype = "http"\nurl = "https://c.example/"\nclient_secret = "env:UNSET"\n'
        '[uplinks.idle]\ntype = "http"\nurl = "https://i.example/"\n',
        encoding="utf-8",
    )
    (tmp_path / "state").mkdir()

    async def populate() -> None:
        journal = await Journal.open(tmp_path / "state" / "journal.db")

        def enqueue(conn: sqlite3.Connection) -> None:
            tx = Transaction(conn, None, set())
            for n in range(4):
                tx.enqueue(
                    uplink="cloud",
                    kind="demo",
                    order_key=f"k{n}",
                    dedupe_key=f"d{n}",
                    payload={"n": n},
                )

        await journal.run(enqueue)
        leased = await journal.run(
            lambda c: outbox.lease(c, "cloud", 10, block_on_dead=False, now=9e12)
        )
        await journal.run(lambda c: outbox.mark_delivered(c, leased[0].id, "ok"))
        await journal.run(lambda c: outbox.mark_retry(c, leased[1].id, "HTTP 503", 9e12, None))
        dead_ids = [m.id for m in leased[2:]]

        def kill(conn: sqlite3.Connection) -> None:
            for message_id in dead_ids:
                outbox.mark_dead(
                    conn, message_id, "HTTP 422: field cleanId too long", '{"code":422}'
                )

        await journal.run(kill)
        await journal.close()

    asyncio.run(populate())
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def states(config: Path) -> dict[int, str]:
    with sqlite3.connect(config.parent / "state" / "journal.db") as conn:
        return dict(conn.execute("SELECT id, state FROM outbox").fetchall())


def test_status_counts_each_configured_uplink_without_resolving_secrets(config, capsys):
    # client_secret names an unset variable: status must still work (systemd holds secrets).
    code, out, _ = run_cli(capsys, "status", "-c", str(config), "--json")
    assert code == 0
    status = json.loads(out)
    assert status["open_alerts"] == 0
    rows = {row["uplink"]: row for row in status["uplinks"]}
    assert (rows["cloud"]["pending"], rows["cloud"]["dead"], rows["cloud"]["delivered"]) == (
        1,
        2,
        1,
    )
    assert rows["cloud"]["oldest_pending_age"] >= 0
    assert rows["idle"]["pending"] == 0 and rows["idle"]["breaker"] == "closed"
    code, out, _ = run_cli(capsys, "status", "-c", str(config))
    assert code == 0 and out.splitlines()[0].split()[:4] == [
        "UPLINK",
        "PENDING",
        "INFLIGHT",
        "DEAD",
    ]


def test_outbox_list_and_show_give_the_platform_reason(config, capsys):
    code, out, _ = run_cli(capsys, "outbox", "list", "-c", str(config), "--state", "dead", "--json")
    dead = json.loads(out)
    assert code == 0 and [m["state"] for m in dead] == ["dead", "dead"]
    code, out, _ = run_cli(capsys, "outbox", "show", "-c", str(config), str(dead[0]["id"]))
    shown = json.loads(out)
    assert shown["last_error"] == "HTTP 422: field cleanId too long"
    assert shown["response"] == {"code": 422} and shown["payload"] == {"n": 3}  # JSON, not text
    assert datetime.fromisoformat(shown["created_at"]).utcoffset() == timedelta(0)
    assert dead[0]["settled_at"].endswith("+00:00")
    code, _, err = run_cli(capsys, "outbox", "show", "-c", str(config), "999")
    assert code == 1 and "no outbox message 999" in err


def test_retry_requeues_dead_letters_and_is_audited(config, capsys):
    dead = [i for i, s in states(config).items() if s == "dead"]
    code, out, _ = run_cli(
        capsys, "outbox", "retry", "-c", str(config), str(dead[0]), "--actor", "it-engineer"
    )
    assert code == 0 and f"re-queued 1 message(s): {dead[0]}" in out
    assert states(config)[dead[0]] == "pending"
    code, out, _ = run_cli(capsys, "outbox", "retry", "-c", str(config), "--all-dead")
    assert code == 0 and states(config)[dead[1]] == "pending"
    with sqlite3.connect(config.parent / "state" / "journal.db") as conn:
        audit = conn.execute("SELECT actor, action, target FROM audit ORDER BY id").fetchall()
    assert audit[0] == ("it-engineer", "outbox.retry", f"outbox:{dead[0]}")


def test_retry_with_an_edited_payload(config, capsys, tmp_path):
    dead = next(i for i, s in states(config).items() if s == "dead")
    fixed = tmp_path / "fixed.json"
    fixed.write_text('{"n": 3, "cleanId": "short"}', encoding="utf-8")
    code, _, _ = run_cli(
        capsys, "outbox", "retry", "-c", str(config), str(dead), "--payload", str(fixed)
    )
    assert code == 0
    _, out, _ = run_cli(capsys, "outbox", "show", "-c", str(config), str(dead))
    assert json.loads(out)["payload"] == {"n": 3, "cleanId": "short"}


def test_discard_needs_yes_and_is_audited_with_reason(config, capsys):
    dead = next(i for i, s in states(config).items() if s == "dead")
    code, _, err = run_cli(
        capsys, "outbox", "discard", "-c", str(config), str(dead), "--reason", "duplicate record"
    )
    assert code == 2 and "--yes" in err and states(config)[dead] == "dead"
    code, _out, _ = run_cli(
        capsys,
        "outbox",
        "discard",
        "-c",
        str(config),
        str(dead),
        "--reason",
        "duplicate record",
        "--yes",
        "--actor",
        "nurse-li",
    )
    assert code == 0 and states(config)[dead] == "discarded"
    with sqlite3.connect(config.parent / "state" / "journal.db") as conn:
        ((actor, detail),) = conn.execute("SELECT actor, detail FROM audit").fetchall()
    assert actor == "nurse-li" and json.loads(detail) == {"reason": "duplicate record"}


def test_delivered_messages_cannot_be_discarded_or_retried_and_the_cli_says_why(config, capsys):
    delivered = next(i for i, s in states(config).items() if s == "delivered")
    code, _, err = run_cli(capsys, "outbox", "retry", "-c", str(config), str(delivered), "999")
    assert code == 1
    assert f"message {delivered} not retried: it is delivered" in err
    assert "message 999 not retried: no such message" in err
    code, _, err = run_cli(
        capsys, "outbox", "discard", "-c", str(config), str(delivered), "--reason", "x", "--yes"
    )
    assert code == 1 and f"message {delivered} not discarded: it is delivered" in err
    assert states(config)[delivered] == "delivered"


def test_output_into_a_closed_pipe_ends_quietly(config):
    """`edge-agent outbox list | head -1`: no BrokenPipeError traceback, exit 0."""
    command = "from agent.cli import main; raise SystemExit(main())"
    argv = [sys.executable, "-c", command, "outbox", "list", "-c", str(config)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as reader_gone:
        assert reader_gone.stdout is not None and reader_gone.stderr is not None
        reader_gone.stdout.close()  # as `head` does once it has its line
        err = reader_gone.stderr.read()
    assert reader_gone.returncode == 0
    assert err == b""


def test_every_option_of_every_command_says_what_it_is_for():
    undocumented = [
        f"{command} {' / '.join(action.option_strings) or action.dest}"
        for command, parser in _parsers(_parser(), "edge-agent")
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert undocumented == []


def _parsers(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_status_without_a_journal_says_so(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstate_dir = "nothing-here"\n', encoding="utf-8")
    code, _, err = run_cli(capsys, "status", "-c", str(path))
    assert code == 1 and "no journal here" in err


def test_backup_is_a_consistent_copy_and_never_overwrites(config, capsys, tmp_path):
    destination = tmp_path / "backup.db"
    code, out, _ = run_cli(capsys, "backup", "-c", str(config), str(destination))
    assert code == 0 and "backed up" in out
    with sqlite3.connect(destination) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 4
    code, _, err = run_cli(capsys, "backup", "-c", str(config), str(destination))
    assert code == 1 and "exists" in err


def test_handler_failures_are_listed_and_replayed_on_request(tmp_path, capsys):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nstate_dir = "state"\n', encoding="utf-8")
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "journal.db"
    flaky = Flaky()
    event = Event("test.tap", "api", {"n": 1})

    async def fail_once() -> None:
        journal = await Journal.open(db, handlers=(flaky,))
        await journal.ingest([event])
        await journal.close()

    asyncio.run(fail_once())
    code, out, _ = run_cli(capsys, "handlers", "list", "-c", str(path))
    assert code == 0 and "flaky" in out and event.id in out and "OverflowError" in out
    assert run_cli(capsys, "handlers", "replay", "-c", str(path))[0] == 2  # ids or --all
    code, out, _ = run_cli(capsys, "handlers", "replay", "-c", str(path), "1", "--actor", "li")
    assert code == 0 and out.startswith("replay asked for 1 failure(s): 1")
    assert "replay asked" in run_cli(capsys, "handlers", "list", "-c", str(path))[1]

    async def agent_with_the_fix() -> list[str]:
        flaky.fixed = True
        journal = await Journal.open(db, handlers=(flaky,))
        replayed = await journal.replay_requested()
        await journal.close()
        return [r.error for r in replayed]

    assert asyncio.run(agent_with_the_fix()) == [""]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT dedupe_key FROM outbox").fetchall() == [(event.id,)]
        audit = conn.execute("SELECT actor, action, target FROM audit").fetchall()
    assert audit == [("li", "handler.replay", "handler_failure:1")]
    code, out, _ = run_cli(capsys, "handlers", "list", "-c", str(path), "--json")
    assert json.loads(out) == []
    code, out, _ = run_cli(capsys, "handlers", "list", "-c", str(path), "--all", "--json")
    assert [(f["id"], f["attempts"]) for f in json.loads(out)] == [(1, 2)]
    assert run_cli(capsys, "handlers", "replay", "-c", str(path), "1")[0] == 1  # nothing open
