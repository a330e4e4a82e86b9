"""Lookback (追溯) on the dashboard: a form, a printable table (patient masked), the CSV export
(patient in full for a logged-in operator only). Every run is audited with who asked."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from agent.reprocessing.lookback_export import COLUMNS, flat_rows, to_csv
from agent.web.bodies import Refused, only_query
from agent.web.context import EMIT_KEY
from agent.web.dashboard.context import DASHBOARD_KEY, Viewer
from agent.web.dashboard.pages import layout, notice
from agent.web.dashboard.render import Markup, both, join, render
from agent.web.dashboard.sessions import ROUTE_PREFIX
from agent.web.lookback import FIELDS, ask, csv_response, run

PATH = "/lookback"
KIND_LABELS = (
    ("scope", "内镜", "Scope"),
    ("patient", "患者", "Patient"),
    ("washer", "清洗消毒机", "Washer"),
    ("batch", "消毒剂批号", "Disinfectant batch"),
)
FORM = (
    '<form method="get" action="/lookback" class="lookback no-print">'
    '<label>$kind_l <select name="kind">$kinds</select></label>'
    '<label>$subject_l <input name="subject" required value="$subject"></label>'
    '<label>$since_l <input name="since" placeholder="2026-12-01" value="$since"></label>'
    '<label>$until_l <input name="until" placeholder="2026-12-31" value="$until"></label>'
    '<label>$cycle_l <input name="cycle" value="$cycle"></label>'
    '<label>$by_l <input name="by" required value="$by"></label>'
    '<button type="submit">$go</button></form>'
)


def add_lookback_page(app: web.Application) -> None:
    """Serve GET /lookback and GET /lookback.csv as dashboard routes (they check the session)."""
    app.router.add_get(PATH, page, name=f"{ROUTE_PREFIX}lookback")
    app.router.add_get(f"{PATH}.csv", export, name=f"{ROUTE_PREFIX}lookback_csv")


def form(query: dict[str, str]) -> Markup:
    """The question form, filled with what was asked."""
    kinds = join(
        render(
            '<option value="$v"$sel>$zh $en</option>',
            v=value,
            sel=Markup(" selected") if query.get("kind") == value else Markup(""),
            zh=zh,
            en=en,
        )
        for value, zh, en in KIND_LABELS
    )
    return render(
        FORM,
        kinds=kinds,
        kind_l=both("追溯对象", "From"),
        subject_l=both("编号/RFID/患者ID", "Number, RFID or patient id"),
        since_l=both("起始", "Since"),
        until_l=both("截止", "Until"),
        cycle_l=both("起始洗消周期", "From cycle"),
        by_l=both("查询人", "Asked by"),
        go=both("查询", "Look back"),
        **{name: query.get(name, "") for name in ("subject", "since", "until", "cycle", "by")},
    )


def table(rows: list[dict[str, str]]) -> Markup:
    """The rows under their Chinese (and English) headings."""
    if not rows:
        return render('<p class="empty">$t</p>', t=both("无记录", "Nothing found"))
    head = join(render("<th>$h</th>", h=both(zh, en)) for _, zh, en in COLUMNS)
    body = join(
        render(
            "<tr>$cells</tr>", cells=join(render("<td>$v</td>", v=row[k]) for k, _, _ in COLUMNS)
        )
        for row in rows
    )
    return render(
        '<table class="grid lookback"><thead><tr>$head</tr></thead><tbody>$body</tbody></table>',
        head=head,
        body=body,
    )


def _allowed(request: web.Request) -> Viewer:
    dashboard = request.app[DASHBOARD_KEY]
    viewer = Viewer(dashboard.sessions.of(request))
    if not (viewer.operator or dashboard.read_only_open):
        raise web.HTTPSeeOther(f"/login?next={PATH}")
    return viewer


async def page(request: web.Request) -> web.Response:
    """GET /lookback[?kind=&subject=…&by=]: the form, and the answer when asked (masked)."""
    only_query(request, *FIELDS)
    viewer = _allowed(request)
    dashboard = request.app[DASHBOARD_KEY]
    query = dict(request.query)
    result, problems = Markup(""), None
    if query.get("subject"):
        try:
            question, by = ask(query, dashboard.reprocessing)
            entries = await run(
                request.app[EMIT_KEY], dashboard.query, question, by=by, via="dashboard", full=False
            )
        except Refused as err:
            problems = err.found
        else:
            rows = flat_rows(entries, dashboard.zone, full=False)
            link = f"{PATH}.csv?{urlencode({k: v for k, v in query.items() if k in FIELDS})}"
            export = render(
                '<p class="no-print"><a class="button" href="$href">$t</a> $full</p>',
                href=link,
                t=both("导出 CSV", "Export CSV"),
                full=both("（登录后导出含完整患者信息）", "(full patient details when logged in)")
                if not viewer.operator
                else Markup(""),
            )
            result = render("$export$table", export=export, table=table(rows))
    body = layout(
        name="lookback",
        chinese="追溯",
        english="Lookback",
        viewer=viewer,
        live=result,
        here=request.path,
        zone=dashboard.zone,
        before=form(query),
        notice=notice(None, problems),
    )
    return web.Response(text=body, content_type="text/html")


async def export(request: web.Request) -> web.Response:
    """GET /lookback.csv?…: the CSV, patient in full for a logged-in operator, else masked."""
    only_query(request, *FIELDS)
    viewer = _allowed(request)
    dashboard = request.app[DASHBOARD_KEY]
    question, by = ask(request.query, dashboard.reprocessing)
    full = viewer.operator
    entries = await run(
        request.app[EMIT_KEY], dashboard.query, question, by=by, via="dashboard:csv", full=full
    )
    return csv_response(to_csv(flat_rows(entries, dashboard.zone, full=full)), question)
