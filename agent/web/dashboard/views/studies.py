"""Studies (影像): recent studies and their delivery state per platform."""

from __future__ import annotations

from functools import partial
from typing import Any

from agent.imaging.state import recent_studies
from agent.vocabulary.masking import mask_id
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, icon, join, local_time, render

RECENT = 50
STATE = {"receiving": ("progress", "接收中", "receiving"), "stable": ("ready", "完整", "stable")}


def delivery_badge(uplink: str, kinds: dict[str, dict[str, int]]) -> Markup:
    """One platform's delivery of a study: delivered / pending / dead, summed over kinds."""
    totals = {k: sum(c.get(k, 0) for c in kinds.values()) for k in ("delivered", "pending", "dead")}
    if totals["dead"]:
        state, icon_name, zh = "dead", "blocked", "死信"
    elif totals["pending"]:
        state, icon_name, zh = "pending", "progress", "待发"
    else:
        state, icon_name, zh = "delivered", "ready", "已送达"
    return render(
        '<span class="delivery d-$state">$icon $uplink: $zh <span class="en">$state</span>'
        " ($d/$total)</span>",
        state=state,
        icon=icon(icon_name),
        uplink=uplink,
        zh=zh,
        d=totals["delivered"],
        total=sum(totals.values()),
    )


def study_row(dashboard: Dashboard, study: dict[str, Any]) -> Markup:
    """One study's row."""
    icon_name, zh, en = STATE.get(study["state"], ("none", study["state"], study["state"]))
    deliveries = join(delivery_badge(u, k) for u, k in sorted(study["delivery"].items()))
    return render(
        "<tr><td>$at</td><td>$patient</td><td>$accession</td><td>$modalities</td>"
        '<td>$description</td><td class="num">$count</td>'
        '<td class="state">$icon $zh <span class="en">$en</span></td><td>$deliveries</td></tr>',
        at=local_time(study["last_received"], dashboard.zone),
        patient=mask_id(study["patient_id"]),
        accession=mask_id(study["accession"]),
        modalities=" ".join(study["modalities"]),
        description=study["description"],
        count=study["instance_count"],
        icon=icon(icon_name),
        zh=zh,
        en=en,
        deliveries=deliveries or both("无需上传", "none queued"),
    )


async def studies(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Studies page."""
    found = await dashboard.query(partial(recent_studies, limit=RECENT))
    if not found:
        return render('<p class="empty">$t</p>', t=both("尚无影像", "No studies yet"))
    return render(
        '<table class="grid"><thead><tr><th>$a</th><th>$p</th><th>$n</th><th>$m</th><th>$d</th>'
        "<th>$c</th><th>$s</th><th>$u</th></tr></thead><tbody>$rows</tbody></table>",
        a=both("最近接收", "Last received"),
        p=both("患者", "Patient"),
        n=both("检查号", "Accession"),
        m=both("模态", "Modality"),
        d=both("描述", "Description"),
        c=both("图像数", "Images"),
        s=both("状态", "State"),
        u=both("上传", "Delivery"),
        rows=join(study_row(dashboard, s) for s in found),
    )
