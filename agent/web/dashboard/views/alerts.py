"""Alerts (警报): open alerts to acknowledge, blocked scopes to override (forms when logged in)."""

from __future__ import annotations

from typing import Any

from agent.journal.alerts import open_alerts
from agent.reprocessing.state import scope_states
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, icon, join, local_time, render

SEVERITY = {
    "critical": ("blocked", "严重", "CRITICAL"),
    "error": ("warning", "错误", "ERROR"),
    "warning": ("warning", "警告", "WARNING"),
}


async def alerts(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Alerts page."""
    found: list[dict[str, Any]] = await dashboard.query(open_alerts)
    blocked = [s for s in await dashboard.query(scope_states) if s["blocked"]]
    rows = [alert_card(dashboard, viewer, a) for a in found]
    scopes = [blocked_card(viewer, s) for s in blocked]
    return render(
        '<section><h2>$h1 <span class="count">$n</span></h2>$alerts</section>'
        '<section><h2>$h2 <span class="count">$m</span></h2>$scopes</section>',
        h1=both("未确认的警报", "Open alerts"),
        n=len(found),
        alerts=join(rows) if rows else render('<p class="empty">$t</p>', t=both("无", "None")),
        h2=both("禁用的内镜", "Blocked endoscopes"),
        m=len(blocked),
        scopes=join(scopes) if scopes else render('<p class="empty">$t</p>', t=both("无", "None")),
    )


def alert_card(dashboard: Dashboard, viewer: Viewer, alert: dict[str, Any]) -> Markup:
    """One open alert; with the acknowledge form for an operator."""
    icon_name, zh, en = SEVERITY.get(str(alert["severity"]), ("warning", "", ""))
    form = Markup("")
    if viewer.operator:
        form = render(
            '<form method="post" action="/alerts/$id/acknowledge" class="inline">'
            '<input type="hidden" name="csrf" value="$csrf">'
            '<label>$by <input name="by" required maxlength="64" autocomplete="name"></label>'
            '<label>$note <input name="note" maxlength="500"></label>'
            '<button type="submit">$ack</button></form>',
            id=alert["id"],
            csrf=viewer.csrf,
            by=both("姓名", "Name"),
            note=both("备注", "Note"),
            ack=both("确认", "Acknowledge"),
        )
    return render(
        '<article class="alert sev-$sev" id="alert-$id" data-alert="$id">'
        '<header>$icon <strong>$zh</strong> <span class="en">$en</span>'
        ' <span class="code">$code</span> <span class="subject">$subject</span>'
        ' <time>$at</time></header><p class="message">$message</p>$form</article>',
        sev=alert["severity"],
        id=alert["id"],
        icon=icon(icon_name),
        zh=zh,
        en=en,
        code=alert["code"],
        subject=alert["subject"],
        at=local_time(alert["at"], dashboard.zone),
        message=alert["message"],
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
