"""Uplinks (上传) per platform, and dead letters (死信): list, inspect, retry, discard."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from agent.journal import queries
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, duration, icon, join, local_time, render

RATE_WINDOW = 60.0  # seconds: deliveries per minute are counted over the last minute
CODE_KEYS = ("code", "resultCode", "errCode", "status")
MESSAGE_KEYS = ("msg", "message", "resultMsg", "errMsg", "error", "detail")
BREAKER = {
    "closed": ("ready", "正常", "closed"),
    "half_open": ("warning", "试探", "half-open"),
    "open": ("blocked", "熔断", "OPEN"),
}


@dataclass(frozen=True, slots=True)
class LastError:
    """An uplink's last error, when it happened, and whether a delivery succeeded since."""

    text: str
    at: float | None
    recovered: bool


def uplink_details(conn: sqlite3.Connection) -> tuple[dict[str, LastError], dict[str, int]]:
    """Each uplink's last error, and its deliveries in the last minute."""
    errors = {
        uplink: LastError(readable(error or ""), failed, bool(ok and failed and ok > failed))
        for uplink, error, failed, ok in conn.execute(
            "SELECT uplink, last_error, last_failure_at, last_success_at FROM uplink_state"
        )
    }
    rates = dict(
        conn.execute(
            "SELECT uplink, COUNT(*) FROM outbox WHERE state = 'delivered' AND settled_at > ?"
            " GROUP BY uplink",
            (time.time() - RATE_WINDOW,),
        ).fetchall()
    )
    return errors, rates


def error_cell(dashboard: Dashboard, viewer: Viewer, last: LastError) -> Markup:
    """The last error with its time; dimmed, and said so, once a delivery succeeded since."""
    if not last.text:
        return render('<td class="error"></td>')
    text = last.text if viewer.operator else "…"  # platform answers may quote a patient
    return render(
        '<td class="error$old">$text <span class="when">$at$after</span></td>',
        old=" recovered" if last.recovered else "",
        text=text,
        at=local_time(last.at, dashboard.zone, "%m-%d %H:%M:%S"),
        after=render(" · $t", t=both("已恢复", "recovered")) if last.recovered else "",
    )


def readable(error: str) -> str:
    """A platform's JSON answer in an error said as text: `HTTP 422: code 1 — msg`."""
    head, brace, rest = error.partition("{")
    if not brace:
        return error
    try:
        answer = json.loads(brace + rest)
    except ValueError:
        return error
    if not isinstance(answer, dict):
        return error
    code = next((answer[k] for k in CODE_KEYS if k in answer), None)
    message = next((answer[k] for k in MESSAGE_KEYS if answer.get(k)), None)
    said = " — ".join(str(part) for part in (code and f"code {code}", message) if part)
    return f"{head.rstrip(' :')}: {said}".lstrip(": ") if said else error


RECONCILED = {  # a results-sharing day's state (agent/uplinks/results_sharing/reconcile.py)
    "reported": ("warning", "日报已报，待校验", "reported, to check"),
    "resent": ("warning", "平台缺失，已补传", "missing records re-sent"),
    "complete": ("ready", "平台数据完整", "complete at the platform"),
    "unreconciled": ("blocked", "补传后仍缺失", "still missing after re-sends"),
}


def reconciliations(conn: sqlite3.Connection) -> list[tuple[str, str, str, int, int]]:
    """(uplink, day, state, records, missing) of each uplink's latest reconciled day."""
    try:
        return list(
            conn.execute(
                "SELECT uplink, day, state, records, missing FROM rs_daily r WHERE day ="
                " (SELECT MAX(day) FROM rs_daily WHERE uplink = r.uplink) ORDER BY uplink"
            )
        )
    except sqlite3.OperationalError:  # a journal from before the table
        return []


def reconciliation_lines(rows: list[tuple[str, str, str, int, int]]) -> Markup:
    """One line per uplink: the platform's completeness check of the latest day."""
    lines = []
    for uplink, day, state, records, missing in rows:
        icon_name, zh, en = RECONCILED.get(state, ("warning", state, state))
        lines.append(
            render(
                '<p class="reconciled" id="reconciled-$u">$icon $u $day: $zh <span class="en">$en'
                "</span> ($records $rec$missing)</p>",
                icon=icon(icon_name),
                u=uplink,
                day=day,
                zh=zh,
                en=en,
                records=records,
                rec=both("条", "records"),
                missing=render(", $n $t", n=missing, t=both("缺失", "missing")) if missing else "",
            )
        )
    return join(lines)


async def uplinks(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Uplinks page: one row per uplink, then the platforms' completeness."""
    snapshot = await dashboard.observe()
    errors, rates = await dashboard.query(uplink_details)
    checked = reconciliation_lines(await dashboard.query(reconciliations))
    rows = []
    for q in snapshot.queues:
        icon_name, zh, en = BREAKER.get(q.breaker, ("warning", q.breaker, q.breaker))
        dead = q.counts.get("dead", 0)
        last = errors.get(q.uplink, LastError("", None, False))
        rows.append(
            render(
                '<tr id="uplink-$name" class="b-$breaker"><th>$name</th>'
                '<td class="state">$icon $zh <span class="en">$en</span></td>'
                '<td class="num">$pending</td><td class="num">$inflight</td>'
                '<td class="num $deadcls">$dead</td><td>$oldest</td><td class="num">$rate</td>'
                '<td class="num">$delivered / $retried / $died</td>'
                "$error</tr>",
                name=q.uplink,
                breaker=q.breaker,
                icon=icon(icon_name),
                zh=zh,
                en=en,
                pending=q.counts.get("pending", 0),
                inflight=q.counts.get("inflight", 0),
                dead=dead,
                deadcls="bad" if dead else "",
                oldest=duration(q.oldest_pending_age),
                rate=rates.get(q.uplink, 0),
                delivered=q.delivered_total,
                retried=q.retried_total,
                died=q.dead_total,
                error=error_cell(dashboard, viewer, last),
            )
        )
    if not rows:
        return render('<p class="empty">$t</p>', t=both("未配置上传", "No uplinks configured"))
    return render(
        '<table class="grid"><thead><tr><th>$n</th><th>$b</th><th>$p</th><th>$i</th><th>$d</th>'
        "<th>$o</th><th>$r</th><th>$t</th><th>$e</th></tr></thead><tbody>$rows</tbody></table>"
        '$checked<p><a href="/dead-letters">$dl</a></p>',
        checked=checked,
        n=both("平台", "Uplink"),
        b=both("熔断器", "Breaker"),
        p=both("待发", "Pending"),
        i=both("发送中", "In flight"),
        d=both("死信", "Dead"),
        o=both("最久待发", "Oldest pending"),
        r=both("每分钟", "Per minute"),
        t=both("送达/重试/死信", "Delivered/retried/dead"),
        e=both("最近错误", "Last error"),
        rows=join(rows),
        dl=both("死信列表", "Dead letters"),
    )


async def dead_letters(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Dead letters page: newest first, with the platform's reason."""
    async with dashboard.operator_db.use() as db:
        messages = await queries.list_messages(db, uplink=None, state="dead", limit=200)
    if not messages:
        return render(
            '<p class="empty">$i $t</p>', i=icon("ready"), t=both("没有死信", "No dead letters")
        )
    rows = [
        render(
            '<tr id="message-$id"><th><a href="/dead-letters/$id">$id</a></th><td>$uplink</td>'
            '<td>$kind</td><td class="num">$attempts</td><td>$at</td><td class="error">$reason</td>'
            "<td>$actions</td></tr>",
            id=m["id"],
            uplink=m["uplink"],
            kind=m["kind"],
            attempts=m["attempts"],
            at=local_time(m["settled_at"], dashboard.zone),
            reason=m["last_error"] if viewer.operator else "…",
            actions=actions(viewer, m["id"]),
        )
        for m in messages
    ]
    return render(
        '<table class="grid"><thead><tr><th>#</th><th>$u</th><th>$k</th><th>$a</th><th>$t</th>'
        "<th>$r</th><th></th></tr></thead><tbody>$rows</tbody></table>",
        u=both("平台", "Uplink"),
        k=both("类型", "Kind"),
        a=both("尝试", "Attempts"),
        t=both("时间", "Dead since"),
        r=both("平台原因", "Platform's reason"),
        rows=join(rows),
    )


def actions(viewer: Viewer, message_id: int) -> Markup:
    """Retry and discard forms for an operator; nothing for an anonymous viewer."""
    if not viewer.operator:
        return Markup("")
    return render(
        '<form method="post" action="/dead-letters/$id/retry" class="inline">'
        '<input type="hidden" name="csrf" value="$csrf">'
        '<label>$by <input name="by" required maxlength="64"></label>'
        '<button type="submit">$retry</button></form>'
        '<form method="post" action="/dead-letters/$id/discard" class="inline">'
        '<input type="hidden" name="csrf" value="$csrf">'
        '<label>$by <input name="by" required maxlength="64"></label>'
        '<label>$why <input name="reason" required minlength="3" maxlength="500"></label>'
        '<button type="submit" class="danger">$discard</button></form>',
        id=message_id,
        csrf=viewer.csrf,
        by=both("姓名", "Name"),
        why=both("理由", "Reason"),
        retry=both("重发", "Retry"),
        discard=both("丢弃", "Discard"),
    )


def message_detail(dashboard: Dashboard, viewer: Viewer, message: dict[str, Any]) -> Markup:
    """One message: its fields, the payload as sent and the platform's answer (operators only)."""
    fields = join(
        render("<tr><th>$k</th><td>$v</td></tr>", k=key, v=message[key])
        for key in ("uplink", "kind", "state", "attempts", "order_key", "dedupe_key", "last_error")
    )
    return render(
        '<table class="grid detail">$fields<tr><th>$created</th><td>$c</td></tr></table>'
        "<h2>$p</h2><pre>$payload</pre><h2>$r</h2><pre>$response</pre>$actions",
        fields=fields,
        created=both("创建", "Created"),
        c=local_time(message["created_at"], dashboard.zone),
        p=both("内容", "Payload"),
        payload=json.dumps(message["payload"], ensure_ascii=False, indent=2),
        r=both("平台答复", "Platform's answer"),
        response=message.get("response") or "",
        actions=actions(viewer, message["id"]) if message["state"] == "dead" else Markup(""),
    )
