"""Alerts (警报): open alerts to acknowledge, blocked scopes to override (forms when logged in)."""

from __future__ import annotations

from typing import Any

from agent.journal.alerts import open_alert_groups
from agent.reprocessing.state import scope_states
from agent.web.dashboard.alert_titles import title
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, icon, join, local_time, render

SEVERITY = {
    "critical": ("blocked", "严重", "CRITICAL"),
    "error": ("warning", "错误", "ERROR"),
    "warning": ("warning", "警告", "WARNING"),
}


async def alerts(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Alerts page."""
    found: list[dict[str, Any]] = await dashboard.query(open_alert_groups)
    blocked = [s for s in await dashboard.query(scope_states) if s["blocked"]]
    rows = [alert_card(dashboard, viewer, a) for a in found]
    scopes = [blocked_card(viewer, s) for s in blocked]
    return render(
        '<section><h2>$h1 <span class="count">$n</span></h2>$bulk$alerts</section>'
        '<section><h2>$h2 <span class="count">$m</span></h2>$scopes</section>',
        h1=both("未确认的警报", "Open alerts"),
        n=sum(int(group["count"]) for group in found),
        bulk=bulk_form(viewer) if viewer.operator and len(found) > 1 else Markup(""),
        alerts=join(rows) if rows else render('<p class="empty">$t</p>', t=both("无", "None")),
        h2=both("禁用的内镜", "Blocked endoscopes"),
        m=len(blocked),
        scopes=join(scopes) if scopes else render('<p class="empty">$t</p>', t=both("无", "None")),
    )


def bulk_form(viewer: Viewer) -> Markup:
    """Acknowledge the ticked cards at once (each card's box belongs to this form)."""
    return render(
        '<form id="bulk-ack" method="post" action="/alerts/acknowledge" class="inline bulk">'
        '<input type="hidden" name="csrf" value="$csrf">'
        '<label>$by <input name="by" required maxlength="64" autocomplete="name"></label>'
        '<label>$note <input name="note" maxlength="500"></label>'
        '<button type="submit">$ack</button></form>',
        csrf=viewer.csrf,
        by=both("姓名", "Name"),
        note=both("备注", "Note"),
        ack=both("确认所选", "Acknowledge selected"),
    )


def alert_card(dashboard: Dashboard, viewer: Viewer, group: dict[str, Any]) -> Markup:
    """One open alert, or the same one raised again (its count, first and last time); with the
    form that acknowledges all of them for an operator."""
    icon_name, zh, en = SEVERITY.get(str(group["severity"]), ("warning", "", ""))
    form = Markup("")
    if viewer.operator:
        form = render(
            '<form method="post" action="/alerts/$id/acknowledge" class="inline">'
            '<input type="hidden" name="csrf" value="$csrf">'
            '<input type="hidden" name="group" value="true">'
            '<label>$by <input name="by" required maxlength="64" autocomplete="name"></label>'
            '<label>$note <input name="note" maxlength="500"></label>'
            '<button type="submit">$ack</button></form>',
            id=group["id"],
            csrf=viewer.csrf,
            by=both("姓名", "Name"),
            note=both("备注", "Note"),
            ack=both("确认", "Acknowledge")
            if group["count"] == 1
            else both(f"全部确认 ({group['count']})", f"Acknowledge all {group['count']}"),
        )
    if viewer.operator and group["severity"] != "critical":
        form = render(
            '$form<form method="post" action="/alerts/$id/snooze" class="inline snooze">'
            '<input type="hidden" name="csrf" value="$csrf">'
            '<label>$by <input name="by" required maxlength="64" autocomplete="name"></label>'
            '<label>$why <input name="reason" required minlength="3" maxlength="500"></label>'
            '<label>$hours <input name="hours" type="number" min="1" max="720" value="24">'
            '</label><button type="submit">$go</button></form>',
            form=form,
            id=group["id"],
            csrf=viewer.csrf,
            by=both("姓名", "Name"),
            why=both("理由", "Reason"),
            hours=both("小时", "Hours"),
            go=both("暂停提醒", "Snooze"),
        )
    repeated = Markup("")
    if group["count"] > 1:
        repeated = render(
            '<p class="repeated"><strong>×$n</strong> $times · $first $f · $last $l</p>',
            n=group["count"],
            times=both("次", "times"),
            first=both("首次", "first"),
            f=local_time(group["first_at"], dashboard.zone),
            last=both("最近", "last"),
            l=local_time(group["last_at"], dashboard.zone),
        )
    zh_title, en_title = title(str(group["code"]))
    return render(
        '<article class="alert sev-$sev" id="alert-$id" data-alert="$id" data-count="$n">'
        '<header>$tick$icon <strong>$zh</strong> <span class="en">$en</span>'
        ' <strong class="title">$zh_title</strong> <span class="en">$en_title</span>'
        ' <span class="subject">$subject</span> <span class="code">$code</span>'
        " <time>$at</time></header>"
        '<p class="message">$message</p>$repeated$form</article>',
        sev=group["severity"],
        id=group["id"],
        n=group["count"],
        tick=render(
            '<input type="checkbox" name="alert-$id" value="1" form="bulk-ack" title="$t"> ',
            id=group["id"],
            t="选择 select",
        )
        if viewer.operator
        else Markup(""),
        icon=icon(icon_name),
        zh=zh,
        en=en,
        zh_title=zh_title,
        en_title=en_title,
        subject=group["subject"],
        code=group["code"],
        at=local_time(group["last_at"], dashboard.zone),
        message=group["message"],
        repeated=repeated,
        form=form,
    )


def blocked_card(viewer: Viewer, scope: dict[str, Any]) -> Markup:
    """A blocked scope, its violations, and the override form for an operator."""
    form = Markup("")
    if viewer.operator:
        form = render(
            '<form method="post" action="/scopes/$n/override" class="inline">'
            '<input type="hidden" name="csrf" value="$csrf">'
            '<label>$by <input name="by" required maxlength="64"></label>'
            '<label>$why <input name="reason" required minlength="3" maxlength="500"></label>'
            '<button type="submit" class="danger">$go</button></form>',
            n=scope["number"],
            csrf=viewer.csrf,
            by=both("姓名", "Name"),
            why=both("理由", "Reason"),
            go=both("放行", "Override"),
        )
    violations = join(render("<li>$m</li>", m=v["message"]) for v in scope["violations"])
    return render(
        '<article class="alert sev-critical" id="scope-$n">'
        '<header>$icon <strong>$zh</strong> <span class="en">BLOCKED</span>'
        ' <span class="subject">$n</span></header><ul>$violations</ul>$form</article>',
        n=scope["number"],
        icon=icon("blocked"),
        zh="禁用",
        violations=violations,
        form=form,
    )
