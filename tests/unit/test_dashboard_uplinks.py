"""The Uplinks page says an uplink's last error as text, with its time, and dims it once past."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from agent.web.dashboard.views.uplinks import LastError, error_cell, readable


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (
            'HTTP 422: {"code":422,"msg":"字段 cleanId 过长"}',
            "HTTP 422: code 422 — 字段 cleanId 过长",
        ),
        ('{"resultCode":"-1","resultMsg":"token 已过期"}', "code -1 — token 已过期"),
        ("HTTP 503 Service Unavailable", "HTTP 503 Service Unavailable"),
        ("answer: {not json", "answer: {not json"),
        ('HTTP 400: {"data": null}', 'HTTP 400: {"data": null}'),  # nothing to say: as it came
    ],
)
def test_a_platform_answer_in_an_error_reads_as_text(stored, shown):
    assert readable(stored) == shown


class Board:
    zone = ZoneInfo("Asia/Shanghai")


class Operator:
    operator = True


def test_the_last_error_has_its_time_and_is_dimmed_once_a_delivery_succeeded():
    failed_at = 1_765_000_000.0  # 2025-12-06 13:46:40 in Shanghai
    board, viewer = Board(), Operator()
    current = str(error_cell(board, viewer, LastError("HTTP 503", failed_at, False)))  # type: ignore[arg-type]
    past = str(error_cell(board, viewer, LastError("HTTP 503", failed_at, True)))  # type: ignore[arg-type]
    assert 'class="error"' in current and "12-06 13:46:40" in current and "已恢复" not in current
    assert 'class="error recovered"' in past and "已恢复" in past


def test_the_platforms_completeness_of_the_latest_day_is_one_line_per_uplink():
    from agent.web.dashboard.views.uplinks import reconciliation_lines

    lines = str(
        reconciliation_lines(
            [
                ("sharing", "2026-12-06", "unreconciled", 40, 2),
                ("other", "2026-12-06", "complete", 7, 0),
            ]
        )
    )
    assert "sharing 2026-12-06: 补传后仍缺失" in lines and "2 缺失" in lines
    assert "other 2026-12-06: 平台数据完整" in lines and "(7 条" in lines
