"""Readers and devices (设备): each source — running or down, online or offline, counters."""

from __future__ import annotations

import sqlite3

from agent.observe import DiskState
from agent.web.dashboard.context import Dashboard, Viewer
from agent.web.dashboard.render import Markup, both, icon, join, local_time, render

SOURCE_TYPES = {  # the config's `type`, as people call the device
    "rfid_reader": ("RFID 读卡器", "RFID reader"),
    "mqtt_rfid": ("MQTT 读卡器", "MQTT readers"),
    "washer_printer": ("洗消机打印口", "washer printer line"),
    "washer_folder": ("洗消机导出目录", "washer export folder"),
    "dicom_scp": ("DICOM 接收", "DICOM receiver"),
    "image_capture": ("图像采集", "image capture"),
    "synthetic": ("模拟数据", "synthetic"),
}
COUNTERS = {  # what a source counts: reads, receipts, images, and rejects by reason
    "taps": ("刷卡", "taps"),
    "received": ("收到", "received"),
    "stored": ("已存", "stored"),
    "associations": ("连接", "associations"),
    "receipts": ("小票", "receipts"),
    "rejected": ("拒收", "rejected"),
    "duplicate": ("重复", "duplicate"),
    "bad_checksum": ("校验和错误", "bad checksum"),
    "bad_crc": ("CRC 错误", "bad CRC"),
    "bad_length": ("长度错误", "bad length"),
    "bad_framing": ("帧格式错误", "bad framing"),
    "bad_hex": ("非十六进制", "not hex"),
    "bad_chars": ("非法字符", "bad characters"),
    "bad_line": ("行格式错误", "bad line"),
    "line_too_long": ("行过长", "line too long"),
    "garbage": ("乱码", "garbage"),
    "truncated": ("不完整", "truncated"),
    "oversize": ("过大", "too large"),
    "no_match": ("无法匹配", "no match"),
    "bad_value": ("数值错误", "bad value"),
    "missing_field": ("缺少字段", "missing field"),
    "mis_encoded": ("编码错误", "wrong encoding"),
    "unknown_phase": ("未知阶段", "unknown phase"),
    "empty": ("空", "empty"),
    "bad_time": ("时间错误", "bad time"),
    "bad_json": ("JSON 错误", "bad JSON"),
    "bad_tag": ("标签错误", "bad tag"),
}
RECENT_EVENTS = 5000  # how far back "last event" looks: a bounded scan, not the whole journal
DISK_LEVELS = {  # the spool disk's pressure level: css class, Chinese, English
    "ok": ("ok", "正常", "ok"),
    "warning": ("bad", "空间偏低", "low"),
    "critical": ("bad", "空间告急，正在清理已上传影像", "critical: purging delivered images"),
}
COMPONENT = {
    "running": ("ready", "运行", "running"),
    "finished": ("none", "已结束", "finished"),
    "stopped": ("none", "已停止", "stopped"),
}


def last_events(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """(received_at, kind) of each source's latest event among the most recent ones."""
    found: dict[str, tuple[str, str]] = {}
    for source, received, kind in conn.execute(
        "SELECT source, received_at, kind FROM events ORDER BY seq DESC LIMIT ?", (RECENT_EVENTS,)
    ):
        # A synthetic producer journals as "<source>/<n>": it counts for its source.
        found.setdefault(source.split("/", 1)[0], (received, kind))
    return found


async def devices(dashboard: Dashboard, viewer: Viewer) -> Markup:
    """The live part of the Devices page: one row per source."""
    snapshot = await dashboard.observe()
    recent = await dashboard.query(last_events)
    rows = []
    for source in snapshot.sources:
        icon_name, zh, en = COMPONENT.get(source.component, ("blocked", "故障", source.component))
        if source.online is None:
            link = render('<span class="muted">—</span>')
        elif source.online:
            link = render(
                '<span class="ok">$i $t</span>', i=icon("online"), t=both("在线", "online")
            )
        else:
            link = render(
                '<span class="bad">$i $t</span>', i=icon("offline"), t=both("离线", "offline")
            )
        if source.detail:
            link = render('$link <div class="detail">$d</div>', link=link, d=source.detail)
        counters = join(
            render(
                '<span class="counter" title="$key">$k <strong>$v</strong></span>',
                key=key,
                k=both(*COUNTERS.get(key, (key, ""))),
                v=value,
            )
            for key, value in sorted(source.counters.items())
        )
        at, kind = recent.get(source.name, ("", ""))
        rows.append(
            render(
                '<tr id="source-$name" class="c-$state"><th>$name</th><td>$type</td>'
                '<td class="state">$icon $zh <span class="en">$en</span></td><td>$link</td>'
                '<td>$counters</td><td>$at <span class="code">$kind</span></td></tr>',
                name=source.name,
                type=both(*SOURCE_TYPES.get(source.type, (source.type, ""))),
                state=source.component,
                icon=icon(icon_name),
                zh=zh,
                en=en,
                link=link,
                counters=counters,
                at=local_time(at or None, dashboard.zone),
                kind=kind,
            )
        )
    disk = disk_line(snapshot.disk)
    if not rows:
        empty = render('<p class="empty">$t</p>', t=both("未配置设备", "No sources configured"))
        return join([disk, empty])
    return join([disk, table(rows)])


def disk_line(disk: DiskState | None) -> Markup:
    """The spool disk: its pressure level, free space and thresholds (nothing without imaging)."""
    if disk is None:
        return render("")
    css, zh, en = DISK_LEVELS.get(disk.level, ("bad", disk.level, disk.level))
    free = "?" if disk.free_bytes is None else f"{disk.free_bytes / 2**30:.1f} GiB"
    return render(
        '<p id="disk" class="$css">$label: $state — $free_t $free'
        ' <span class="muted">($w $wv MiB, $c $cv MiB)</span></p>',
        css=css,
        label=both("影像磁盘", "Image disk"),
        state=both(zh, en),
        free_t=both("可用", "free"),
        free=free,
        w=both("预警", "warning below"),
        wv=disk.warning_free_mb,
        c=both("告急", "critical below"),
        cv=disk.critical_free_mb,
    )


def table(rows: list[Markup]) -> Markup:
    """The sources' table."""
    return render(
        '<table class="grid"><thead><tr><th>$n</th><th>$t</th><th>$s</th><th>$l</th><th>$c</th>'
        "<th>$e</th></tr></thead><tbody>$rows</tbody></table>",
        n=both("名称", "Name"),
        t=both("类型", "Type"),
        s=both("状态", "State"),
        l=both("连接", "Link"),
        c=both("计数", "Counters"),
        e=both("最近事件", "Last event"),
        rows=join(rows),
    )
