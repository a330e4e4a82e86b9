"""The dashboard's pages: which live fragment each shows, and the layout around it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, join, render
from agent.web.dashboard.views import alerts, devices, endoscopes, quality, studies, uplinks

EMPTY = Markup("")
Live = Callable[[Dashboard, Viewer], Awaitable[Markup]]
Static = Callable[[Dashboard, Viewer], Markup]


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its path, bilingual title, live fragment and what stands before it."""

    name: str
    path: str
    chinese: str
    english: str
    live: Live
    before: Static | None = None


PAGES = {
    page.name: page
    for page in (
        Page("endoscopes", "/", "内镜", "Endoscopes", endoscopes.endoscopes),
        Page("alerts", "/alerts", "警报", "Alerts", alerts.alerts),
        Page("devices", "/devices", "设备", "Readers and devices", devices.devices),
        Page("uplinks", "/uplinks", "上传", "Uplinks", uplinks.uplinks),
        Page("dead-letters", "/dead-letters", "死信", "Dead letters", uplinks.dead_letters),
        Page("studies", "/studies", "影像", "Studies", studies.studies),
        Page("quality", "/quality", "质量记录", "Quality records", quality.records, quality.forms),
    )
}
NOTICES = {  # ?done=<key> after an action: fixed texts, nothing from the request is echoed
    "acknowledged": ("警报已确认", "Alert acknowledged"),
    "overridden": ("内镜已放行", "Scope released by override"),
    "retried": ("已重新排队发送", "Re-queued for delivery"),
    "discarded": ("已丢弃", "Discarded"),
    "logged_out": ("已退出登录", "Logged out"),
    "snoozed": ("已暂停提醒，仍记录并上报", "Snoozed: still recorded and reported"),
    "session_ended": ("会话已结束，请重新登录", "The session has ended: log in again"),
}

LAYOUT = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="$csrf">
<title>$title · edge-agent</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head>
<body class="page-$name">
<header class="top">
<nav>$nav</nav>
<div class="session">$session</div>
<span class="zone" title="times on these pages">$zone</span>
<span id="live-state" class="live-state" data-state="$state"></span>
</header>
<h1>$heading</h1>
$notice
$before
<main id="live" data-live="$live_name">$live</main>
</body>
</html>
"""


# Pages that are not live fragments (their own routes): (name, path, Chinese, English).
OTHER_PAGES = (("lookback", "/lookback", "追溯", "Lookback"),)


def nav(current: str) -> Markup:
    """Links to every page, the current one marked."""
    pages = [(p.name, p.path, p.chinese, p.english) for p in PAGES.values()] + [*OTHER_PAGES]
    return join(
        render(
            '<a href="$path" class="$cls"$aria>$label</a>',
            path=path,
            cls="current" if name == current else "",
            aria=Markup(' aria-current="page"') if name == current else Markup(""),
            label=both(chinese, english),
        )
        for name, path, chinese, english in pages
    )


def session_box(viewer: Viewer, here: str) -> Markup:
    """Log in link, or who is logged in and the log out button."""
    if not viewer.operator:
        return render(
            '<a class="button" href="/login?next=$n">$t</a>', n=here, t=both("登录", "Log in")
        )
    return render(
        '<span class="who">$t</span><form method="post" action="/logout" class="inline">'
        '<input type="hidden" name="csrf" value="$csrf"><button type="submit">$out</button></form>',
        t=both("已登录", "Operator"),
        csrf=viewer.csrf,
        out=both("退出", "Log out"),
    )


def layout(
    *,
    name: str,
    chinese: str,
    english: str,
    viewer: Viewer,
    live: Markup,
    here: str,
    live_name: str = "",
    before: Markup = EMPTY,
    notice: Markup = EMPTY,
    zone: tzinfo | None = None,
) -> Markup:
    """A whole page; `live_name` names the fragment /events streams into <main> (none: static)."""
    return render(
        LAYOUT,
        csrf=viewer.csrf,
        title=f"{chinese} {english}",
        name=name,
        nav=nav(name),
        session=session_box(viewer, here) if name != "login" else Markup(""),
        state="live" if live_name else "static",
        heading=both(chinese, english),
        notice=notice,
        before=before,
        live_name=live_name,
        live=live,
        zone=zone_label(zone),
    )


def zone_label(zone: tzinfo | None) -> Markup:
    """The zone every time on the page is in: `时区 Time zone Asia/Shanghai UTC+08:00`."""
    now = datetime.now(zone).astimezone(zone)  # zone None: the machine's own
    offset = now.strftime("%z")
    name = getattr(zone, "key", None) or now.tzname() or ""
    return render(
        "$label $name UTC$sign$hh:$mm",
        label=both("时区", "Time zone"),
        name=name,
        sign=offset[:1],
        hh=offset[1:3],
        mm=offset[3:5],
    )


def notice(done: str | None, problems: list[str] | None = None, error: bool = False) -> Markup:
    """The message box after an action, or the problems that stopped it."""
    if problems:
        return render(
            '<div class="notice bad" role="alert"><ul>$items</ul></div>',
            items=join(render("<li>$p</li>", p=p) for p in problems),
        )
    if done in NOTICES:
        return render(
            '<div class="notice $cls" role="status">$t</div>',
            cls="bad" if error else "ok",
            t=both(*NOTICES[done]),
        )
    return Markup("")
