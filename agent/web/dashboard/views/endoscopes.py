"""Endoscopes (内镜): one card per scope, readable on a wall screen from three metres."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.events import utcnow
from agent.reprocessing.config import Endoscope, ReprocessingConfig
from agent.reprocessing.state import scope_states
from agent.vocabulary.masking import mask_id, mask_name
from agent.vocabulary.records import REPROCESSING_RECORDS
from agent.vocabulary.steps import STEP_NAMES, Disinfectant, StepKind
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import (
    Markup,
    both,
    duration,
    icon,
    join,
    local_time,
    parse_time,
    render,
)

STEP_ENGLISH = {
    "pre_clean": "Pre-clean",
    "leak_test": "Leak test",
    "clean": "Clean",
    "enzyme": "Enzyme wash",
    "rinse": "Rinse",
    "disinfect": "Disinfect",
    "sterilize": "Sterilize",
    "final_rinse": "Final rinse",
    "dry": "Dry",
    "machine_wash": "Machine wash",
    "store": "Stored",
    "use": "In use",
}
STATUS = {  # status -> (icon, Chinese, English); the word and the icon carry it, not the colour
    "ready": ("ready", "可用", "READY"),
    "blocked": ("blocked", "禁用", "BLOCKED"),
    "progress": ("progress", "洗消中", "REPROCESSING"),
    "dirty": ("warning", "待洗消", "TO REPROCESS"),
    "none": ("none", "无记录", "NO RECORD"),
}
MAX_VIOLATIONS = 3  # more do not fit a card read from across the room
COMPLIANCE = {
    "compliant": ("合格", "compliant"),
    "non_compliant": ("不合格", "non-compliant"),
    "overridden": ("已放行", "overridden"),
    "pending": ("待判定", "pending"),
}


@dataclass(frozen=True, slots=True)
class LastUse:
    """Who a scope was last used on (masked when shown) and by whom."""

    at: str
    patient_id: str
    patient_name: str
    operator: str


def operator_label(name: str, config: ReprocessingConfig | None) -> Markup:
    """`操作员 Operator: name`; "no badge tapped" for the stand-in the platform is sent when
    nobody tapped a badge (default_upload_user); nothing without a name."""
    if not name:
        return Markup("")
    if config is not None and name == config.default_upload_user:
        shown = render('<span class="muted">$t</span>', t=both("未刷工牌", "no badge tapped"))
        return render("$l: $n", l=both("操作员", "Operator"), n=shown)
    return render("$l: $n", l=both("操作员", "Operator"), n=name)


def scope_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """scope_states plus the open step's station, operator and disinfectant, and the cabinet."""
    extra = {
        number: {"station": station, "operator": operator, "disinfectant": agent, "cabinet": cab}
        for number, station, operator, agent, cab in conn.execute(
            "SELECT s.number, t.station, t.operator, t.disinfectant, s.cabinet FROM rp_scopes s"
            " LEFT JOIN rp_steps t ON t.id = s.step_row"
        )
    }
    return [{**state, **extra.get(state["number"], {})} for state in scope_states(conn)]


def last_use(conn: sqlite3.Connection, uplink: str, number: str) -> tuple[str, str, str]:
    """(patient id, patient name, operator) of the scope's latest use record, as queued."""
    row = conn.execute(
        "SELECT payload FROM outbox WHERE uplink = ? AND order_key = ?"
        " AND kind = 'uploadUseStepData' ORDER BY id DESC LIMIT 1",
        (uplink, f"scope:{number}"),
    ).fetchone()
    if row is None:
        return "", "", ""
    use = json.loads(row[0])
    if use.get("vocabulary") == REPROCESSING_RECORDS:
        names = ("patient_id", "patient_name", "user")
    else:  # queued before the records were neutral: the seed's field names
        names = ("identityId", "name", "uploadUser")
    patient_id, patient_name, user = (str(use.get(name, "")) for name in names)
    return patient_id, patient_name, user


def scope_config(
    dashboard: Dashboard, number: str
) -> tuple[ReprocessingConfig | None, Endoscope | None]:
    """The domain config a scope belongs to, and the scope's own entry."""
    for config in dashboard.reprocessing:
        for scope in config.endoscopes:
            if scope.number == number:
                return config, scope
    return (dashboard.reprocessing[0] if dashboard.reprocessing else None), None


def target_minutes(
    config: ReprocessingConfig | None, scope: Endoscope | None, row: dict[str, Any]
) -> float | None:
    """The rules' minimum for the current step, where they give one."""
    if config is None:
        return None
    rules, kind = config.rules, row.get("step")
    agent = row.get("disinfectant")
    if kind == StepKind.FINAL_RINSE:
        return rules.final_rinse_minutes
    if agent is None or agent not in Disinfectant.__members__.values():
        return None
    if kind == StepKind.DISINFECT:
        return rules.contact_minutes.minimum(
            Disinfectant(agent), scope.system if scope else "other"
        )
    if kind == StepKind.STERILIZE:
        return rules.sterilize_minutes.minimum(Disinfectant(agent))
    return None


def status_of(row: dict[str, Any]) -> str:
    """ready, blocked, progress, dirty (used, not yet reprocessed) or none."""
    if row.get("blocked"):
        return "blocked"
    state = row.get("cycle_state", "none")
    if state == "used":
        return "dirty"
    if state == "open":
        stored = row.get("stored_at") and row.get("compliance") in ("compliant", "overridden")
        return "ready" if stored else "progress"
    return "none"


async def endoscopes(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Endoscopes page: every scope's card."""
    rows = {row["number"]: row for row in await dashboard.query(scope_rows)}
    configured = [s.number for c in dashboard.reprocessing for s in c.endoscopes]
    numbers = configured + sorted(set(rows) - set(configured))
    if not numbers:
        return render('<p class="empty">$t</p>', t=both("尚无内镜", "No endoscopes yet"))
    cards = [await card(dashboard, viewer, n, rows.get(n, {"number": n})) for n in numbers]
    return render('<div class="cards">$cards</div>', cards=join(cards))


async def find_last_use(
    dashboard: Dashboard, config: ReprocessingConfig, number: str, at: str
) -> LastUse:
    """The scope's last use, looked up once per use (cached by scope and use time)."""
    key = (number, at)
    if key not in dashboard.last_uses:
        if len(dashboard.last_uses) > 1024:
            dashboard.last_uses.clear()
        dashboard.last_uses[key] = await dashboard.query(
            partial(last_use, uplink=config.uplink, number=number)
        )
    patient_id, name, operator = dashboard.last_uses[key]
    return LastUse(at, patient_id, name, operator)


async def card(dashboard: Dashboard, viewer: Viewer, number: str, row: dict[str, Any]) -> Markup:
    """One scope's card."""
    config, scope = scope_config(dashboard, number)
    status = status_of(row)
    icon_name, zh, en = STATUS[status]
    lines = [step_line(config, scope, row)]
    compliance = row.get("compliance")
    if compliance:
        zh_c, en_c = COMPLIANCE.get(compliance, (compliance, compliance))
        lines.append(
            render(
                '<p class="compliance c-$c">$label: <strong>$v</strong></p>',
                c=compliance,
                label=both("合规", "Compliance"),
                v=both(zh_c, en_c),
            )
        )
    violations = row.get("violations") or []
    for violation in violations[:MAX_VIOLATIONS]:
        lines.append(
            render(
                '<p class="violation v-$sev">$i $m</p>',
                sev=violation["severity"],
                i=icon("blocked" if violation["severity"] == "error" else "warning"),
                m=violation["message"],
            )
        )
    if len(violations) > MAX_VIOLATIONS:
        lines.append(render('<p class="violation">+ $n …</p>', n=len(violations) - MAX_VIOLATIONS))
    if row.get("override"):
        lines.append(
            render(
                '<p class="override">$label: $by</p>',
                label=both("放行人", "Overridden by"),
                by=row["override"]["by"],
            )
        )
    if row.get("last_use_at") and config is not None:
        use = await find_last_use(dashboard, config, number, row["last_use_at"])
        patient = " / ".join(p for p in (mask_name(use.patient_name), mask_id(use.patient_id)) if p)
        lines.append(
            render(
                '<p class="last-use">$label: $at</p>'
                '<p>$pl: <span class="patient">$p</span></p><p class="who">$op</p>',
                label=both("上次使用", "Last use"),
                pl=both("患者", "Patient"),
                at=local_time(use.at, dashboard.zone, "%m-%d %H:%M"),
                p=patient or "—",
                op=operator_label(use.operator, config),
            )
        )
    if status == "blocked" and viewer.operator:
        lines.append(
            render(
                '<p><a class="button" href="/alerts#scope-$n">$t</a></p>',
                n=number,
                t=both("放行", "Override"),
            )
        )
    return render(
        '<article class="card s-$status" id="scope-$number" data-status="$status">'
        '<header class="banner">$icon <span class="status-word">$zh</span>'
        ' <span class="en">$en</span></header>'
        '<h2 class="scope">$number <span class="kind">$kind</span></h2>$lines</article>',
        status=status,
        number=number,
        icon=icon(icon_name),
        zh=zh,
        en=en,
        kind=" ".join(x for x in (scope.type_name, scope.brand) if x) if scope else "",
        lines=join(lines),
    )


def step_line(
    config: ReprocessingConfig | None, scope: Endoscope | None, row: dict[str, Any]
) -> Markup:
    """The current step, the time in it, and the rules' target for it."""
    kind = row.get("step")
    since = parse_time(row.get("step_since"))
    if kind is None or since is None:
        return Markup("")
    station = (
        next((s for s in config.stations if s.reader == row.get("station")), None)
        if config
        else None
    )
    name = station.name if station else STEP_NAMES.get(StepKind(kind), kind)
    elapsed = (utcnow() - since).total_seconds()
    target = target_minutes(config, scope, row)
    if target is None:
        timing = render('<span class="elapsed">$t</span>', t=duration(elapsed))
    else:
        met = elapsed >= target * 60
        timing = render(
            '<span class="elapsed">$t</span> / <span class="target">$g</span>'
            ' <meter min="0" max="$max" low="$max" optimum="$max" value="$v"></meter>'
            ' <span class="goal $cls">$word</span>',
            t=duration(elapsed),
            g=duration(target * 60),
            max=f"{target * 60:.0f}",
            v=f"{min(elapsed, target * 60):.0f}",
            cls="met" if met else "short",
            word=both("已达标", "target met") if met else both("未达标", "below target"),
        )
    operator = row.get("operator") or ""
    return render(
        '<p class="step">$label: <strong>$name</strong> <span class="en">$en</span> $timing</p>'
        '<p class="who">$op</p>',
        label=both("当前步骤", "Step"),
        name=name,
        en=STEP_ENGLISH.get(kind, kind),
        timing=timing,
        op=operator_label(operator, config),
    )
