"""Lookback on the dashboard: a printable table with the patient masked; the full export only
for a logged-in operator; every run journaled with who asked."""

from __future__ import annotations

from tests.integration.test_dashboard import centre, login, make_client
from tests.unit.test_compliance import Checked

__all__ = ["centre", "make_client"]  # the fixtures this module uses
ASK = {"kind": "scope", "subject": "GIF-001", "since": "2026-11-01", "by": "感控 李"}


async def used_once(centre: Checked) -> None:
    await centre.run_cycle()
    await centre.tap("R9", "PAT-20261123-0042", after=600)
    await centre.tap("R9", "00D507D0")


def runs(centre: Checked) -> int:
    import sqlite3

    with sqlite3.connect(centre.path) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'lookback.run'").fetchone()[0]
        )


async def test_lookback_page_masks_the_patient_and_the_operator_exports_in_full(
    make_client, centre
):
    await used_once(centre)
    client = await make_client()
    assert (await client.get("/lookback", params=ASK, allow_redirects=False)).status == 303
    assert runs(centre) == 0  # nothing asked without a session
    await login(client)
    page = await (await client.get("/lookback", params=ASK)).text()
    assert "追溯" in page and "内镜编号" in page and "GIF-001" in page
    assert "*************0042" in page and "PAT-20261123-0042" not in page
    assert "/lookback.csv?" in page and "@media print" not in page  # the print rule is in CSS
    export = await client.get("/lookback.csv", params=ASK)
    assert export.status == 200 and "PAT-20261123-0042" in await export.text()
    assert runs(centre) == 2


async def test_an_anonymous_wall_screen_exports_only_masked_rows(make_client, centre):
    await used_once(centre)
    client = await make_client(read_only_open=True)
    export = await (await client.get("/lookback.csv", params=ASK)).text()
    assert "*************0042" in export and "PAT-20261123-0042" not in export
    page = await (await client.get("/lookback", params={**ASK, "by": ""})).text()
    assert "by:" in page and "内镜编号" not in page  # who asks is required
    assert runs(centre) == 1
