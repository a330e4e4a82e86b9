"""Every alert code as people read it: Chinese first, English second."""

from __future__ import annotations

WS507 = "ws507."
TITLES: dict[str, tuple[str, str]] = {
    # Use of a scope on a patient (compliance, before the tap is acknowledged).
    "scope_blocked_used": ("禁用内镜被使用", "Blocked scope used"),
    "scope_not_reprocessed": ("内镜未洗消即使用", "Scope used without reprocessing"),
    "scope_used_without_cleaning": ("平台报告：内镜未清洗即使用", "Platform: scope used uncleaned"),
    # Washer-disinfectors.
    "washer_cycle_unlinked": ("洗消机循环未关联内镜", "Washer cycle not linked to a scope"),
    "washer_receipt_rejected": ("洗消机小票无法识别", "Washer receipt not understood"),
    # Quality records.
    "disinfectant_test_failed": ("消毒剂浓度监测不合格", "Disinfectant test failed"),
    "rinse_water_device_fault": ("终末漂洗水设备故障", "Final-rinse water device fault"),
    "rinse_water_filter_replace": ("终末漂洗水滤芯需更换", "Rinse-water filter to replace"),
    "cleaning_effect_failed": ("清洗效果检测不合格", "Cleaning-effect test failed"),
    # Imaging.
    "dicom_disk_low": ("影像存储空间不足", "Image disk below its reserve"),
    "dicom_rejected": ("影像被拒收", "Image refused"),
    "dicom_duplicate_kept_first": ("重复影像未入库", "Duplicate images not indexed"),
    "imaging_instance_missing": ("已接收影像文件丢失", "Received image missing"),
    "imaging_instance_unreadable": ("已接收影像文件损坏", "Received image unreadable"),
    "imaging_instance_not_decodable": ("影像无法解压，未发送", "Image not decodable: not sent"),
    # Results sharing (seed 001): the daily completeness check.
    "results_sharing_unreconciled": ("平台数据校验：补传后仍缺失", "Platform still lacks records"),
    "disk_space_warning": ("影像磁盘空间偏低", "Image disk space low"),
    "disk_space_critical": ("影像磁盘空间告急，提前清理已上传影像", "Image disk critical: purging"),
    # The agent itself.
    "handler_failed": ("记录处理失败，待重放", "Record handling failed: replay it"),
    "uplink_answer_unreadable": ("平台应答无法解析，已转死信", "Unreadable answers: dead letter"),
}
RULE_TITLES: dict[str, tuple[str, str]] = {  # WS 507-2016 rules: ws507.<rule>
    "step_order": ("洗消步骤顺序错误", "Steps out of order"),
    "missing_step": ("缺少洗消步骤", "A step is missing"),
    "leak_test": ("未做测漏", "No leak test"),
    "contact_time": ("消毒/灭菌时间不足", "Contact time too short"),
    "disinfectant_unknown": ("消毒剂未知，无法计时", "Disinfectant unknown: not timed"),
    "concentration": ("消毒剂浓度不足", "Concentration too low"),
    "final_rinse_time": ("终末漂洗时间不足", "Final rinse too short"),
    "use_to_clean_delay": ("使用后未及时清洗", "Cleaning started too late after use"),
    "daily_redisinfection": ("当日首次使用前未再消毒", "No re-disinfection before first use"),
    "storage_time": ("储存超时，需再处理", "Stored too long: reprocess"),
    "washer_failure": ("洗消机循环失败", "Washer cycle failed"),
    "system_separation": ("不同系统内镜混用洗消机", "Washer shared across scope systems"),
    "batch_monitoring": ("消毒剂批次无浓度监测", "Disinfectant batch not monitored"),
}


def title(code: str) -> tuple[str, str]:
    """(Chinese, English) for an alert code; the code itself for one not named here yet."""
    if code.startswith(WS507):
        zh, en = RULE_TITLES.get(code.removeprefix(WS507), (code, code))
        return f"WS 507 {zh}", en
    return TITLES.get(code, (code, code))
