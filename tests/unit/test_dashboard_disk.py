"""The Devices page says how full the image disk is and what the agent does about it."""

from __future__ import annotations

from agent.observe import DiskState
from agent.web.dashboard.views.devices import disk_line


def test_the_image_disk_line_names_its_level_free_space_and_thresholds():
    critical = str(disk_line(DiskState(3 * 2**30, "critical", 4096, 2048)))
    assert 'class="bad"' in critical and "空间告急，正在清理已上传影像" in critical
    assert "3.0 GiB" in critical and "4096 MiB" in critical and "2048 MiB" in critical
    ok = str(disk_line(DiskState(None, "ok", 4096, 2048)))
    assert 'class="ok"' in ok and "正常" in ok and "? " in ok  # free space unreadable
    assert str(disk_line(None)) == ""  # no imaging domain: no line
