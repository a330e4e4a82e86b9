"""Quality records (质量记录): forms posting to /api/v1/quality/*, and the latest records."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.vocabulary.steps import Disinfectant
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, icon, join, local_time, render

KINDS = {
    "disinfectant": ("消毒剂浓度", "Disinfectant test"),
    "rinse_water": ("终末漂洗水", "Rinse water"),
    "cleaning_effect": ("清洗效果", "Cleaning effect"),
}
DISINFECTANTS = {
    "opa": "邻苯二甲醛 OPA",
    "glutaraldehyde": "戊二醛 Glutaraldehyde",
    "peracetic_acid": "过氧乙酸 Peracetic acid",
    "chlorine_dioxide": "二氧化氯 Chlorine dioxide",
    "acidic_oxidising_water": "酸性氧化电位水 Acidic oxidising water",
    "custom": "其他 Other",
}
PASSED = (
    '<label>$l <select name="passed" required><option value="true">合格 pass</option>'
    '<option value="false">不合格 fail</option></select></label>'
)
TESTED_AT = '<label>$l <input type="datetime-local" name="tested_at" step="1"></label>'


def recent_records(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The 20 latest quality records."""
    cursor = conn.execute(
        "SELECT kind, subject, tested_at, passed, recorded_by FROM quality_tests"
        " ORDER BY tested_at DESC, id DESC LIMIT 20"
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor]


async def records(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Quality page: the latest records."""
    found = await dashboard.query(recent_records)
    if not found:
        return render('<p class="empty">$t</p>', t=both("尚无记录", "No records yet"))
    rows = [
        render(
            '<tr><td>$at</td><td>$kind</td><td>$subject</td><td class="state $cls">$icon $r</td>'
            "<td>$by</td></tr>",
            at=local_time(r["tested_at"], dashboard.zone),
            kind=both(*KINDS.get(r["kind"], (r["kind"], r["kind"]))),
            subject=r["subject"],
            cls="ok" if r["passed"] else "bad",
            icon=icon("ready" if r["passed"] else "blocked"),
            r=both("合格", "pass") if r["passed"] else both("不合格", "fail"),
            by=r["recorded_by"],
        )
        for r in found
    ]
    return render(
        '<h2>$h</h2><table class="grid"><thead><tr><th>$a</th><th>$k</th><th>$s</th><th>$r</th>'
        "<th>$b</th></tr></thead><tbody>$rows</tbody></table>",
        h=both("最近记录", "Latest records"),
        a=both("时间", "Tested at"),
        k=both("类型", "Kind"),
        s=both("对象", "Subject"),
        r=both("结果", "Result"),
        b=both("记录人", "Recorded by"),
        rows=join(rows),
    )


def forms(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The three forms (only for a logged-in operator: they change the journal)."""
    if not viewer.operator:
        return render(
            '<p class="notice"><a href="/login?next=/quality">$t</a></p>',
            t=both("登录后录入", "Log in to enter records"),
        )
    scopes = join(
        render('<option value="$n">$t</option>', n=s.number, t=s.type_name)
        for c in dashboard.reprocessing
        for s in c.endoscopes
    )
    agents = join(
        render('<option value="$v">$t</option>', v=d.value, t=DISINFECTANTS.get(d.value, d.value))
        for d in Disinfectant
    )
    person = '<label>$l <input name="recorded_by" required maxlength="64"></label>'
    return render(
        '<div class="forms">'
        '<form class="api-form" data-api="/api/v1/quality/disinfectant-tests"'
        ' enctype="multipart/form-data"><h2>$h1</h2>'
        '<label>$batch <input name="ratio_number" required maxlength="64"></label>'
        '<label>$agent <select name="disinfectant" required>$agents</select></label>'
        '<label>$minutes <input type="number" name="duration_minutes" required min="0.01"'
        ' max="1440" step="0.01"></label>'
        '<label>$freq <input name="frequency" required maxlength="200"></label>'
        "$passed $tested $person"
        '<label>$photo <input type="file" name="photo" accept="image/jpeg,image/png"></label>'
        '<button type="submit">$save</button><output class="result"></output></form>'
        '<form class="api-form" data-api="/api/v1/quality/rinse-water"'
        ' enctype="multipart/form-data"><h2>$h2</h2>'
        '<label>$device <input name="device" required maxlength="13"></label>'
        '<label>$status <select name="status"><option value="normal">正常 normal</option>'
        '<option value="fault">故障 fault</option></select></label>'
        '<label>$filter <select name="filter"><option value="">—</option>'
        '<option value="normal">正常 normal</option><option value="replace">需更换 replace'
        "</option></select></label>$tested $person"
        '<button type="submit">$save</button><output class="result"></output></form>'
        '<form class="api-form" data-api="/api/v1/quality/cleaning-effect-tests"'
        ' enctype="multipart/form-data"><h2>$h3</h2>'
        '<label>$scope <input name="scope" required maxlength="64" list="scope-numbers">'
        '<datalist id="scope-numbers">$scopes</datalist></label>'
        '<label>$inspector <input name="inspector" required maxlength="64"></label>'
        "$passed $tested"
        '<label>$photos <input type="file" name="photo" accept="image/jpeg,image/png" multiple'
        " required></label>"
        '<button type="submit">$save</button><output class="result"></output></form></div>',
        h1=both(*KINDS["disinfectant"]),
        h2=both(*KINDS["rinse_water"]),
        h3=both(*KINDS["cleaning_effect"]),
        batch=both("批号", "Batch number"),
        agent=both("消毒剂", "Disinfectant"),
        agents=agents,
        minutes=both("浸泡时间(分钟)", "Contact minutes"),
        freq=both("监测频次", "Test frequency"),
        passed=render(PASSED, l=both("结果", "Result")),
        tested=render(TESTED_AT, l=both("检测时间", "Tested at")),
        person=render(person, l=both("记录人", "Recorded by")),
        photo=both("试纸照片", "Test-strip photo"),
        photos=both("照片 (1-3 张)", "Photos (1-3)"),
        device=both("设备编号", "Device number"),
        status=both("状态", "Status"),
        filter=both("滤芯", "Filter"),
        scope=both("内镜", "Endoscope"),
        scopes=scopes,
        inspector=both("检测人", "Inspector"),
        save=both("提交", "Submit"),
    )
