"""One valid payload per endpoint, as the domain would queue it (no auth, no institution codes)."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {
    "uploadReadData": {
        "cleanId": "C20240101-0001",
        "collectionTime": "2024-01-01 08:00:00",
        "deviceRfidNumber": "E200001",
        "readerId": "192.168.1.21",
        "uploadUser": "N001",
    },
    "uploadUseStepData": {
        "cleanId": "C20240101-0001",
        "identityId": "HIS0001",
        "name": "测试患者",
        "number": "GIF-H290-01",
        "uploadUser": "N001",
    },
    "addEndoSocopeInfo": {
        "number": "GIF-H290-01",
        "rfidNumber": "E200001",
        "typeName": "胃镜",
        "model": "Olympus",
        "steelNumber": "2900001",
        "aliasName": "检查镜",
        "status": 0,
        "buyDate": "2023-06-01 00:00:00",
        "durableYears": 5,
    },
    "addCardReaderInfo": {
        "rfidNumber": "R100001",
        "stepId": "1",
        "stepName": "初洗",
        "status": 0,
    },
    "addCleanStepInfo": {
        "stepId": 1,
        "stepName": "初洗",
        "orderId": 1,
        "orderTime": 0,
        "parentId": "0",
    },
    "uploadEnzymeWashData": {
        "rfidNumber": "E200001",
        "userName": "N001",
        "cleanId": "C20240101-0001",
        "temp": "38",
        "startTime": "2024-01-01 08:01:00",
        "endTime": "2024-01-01 08:06:00",
        "washTime": "2024-01-01 08:02:00",
        "ratio": "1:100",
    },
    "uploadDisinfectData": {
        "ratioNumber": "RN20240101",
        "disinfectDuration": 5,
        "disinfectantConc": 1,
        "imageUrl": "http://files.hospital.example/strip/1.jpg",
        "uploadTime": "2024-01-01 07:30:00",
        "frequency": "1",
        "result": 1,
    },
    "sterProcess": {
        "cleanId": "C20240101-0001",
        "rfidNumber": "E200001",
        "userName": "N001",
        "startTime": "2024-01-01 08:10:00",
        "endTime": "2024-01-01 08:15:00",
        "type": 0,
        "ratioNumber": "RN20240101",
    },
    "rinseWater": {"wteNumber": "W01", "status": 1, "dfcwStatus": 1},
    "endoscopeSave": {
        "storagetNumber": "G01",
        "rfidNumber": "E200001",
        "storeTime": "2024-01-01 08:30:00",
        "takeoutTime": "2024-01-01 10:00:00",
    },
    "cleaningEffectTesting": {
        "rfidNumber": "E200001",
        "testingTime": "2024-01-01 08:20:00",
        "inspector": "N002",
        "pic1": "http://files.hospital.example/ai/1.jpg",
        "pic2": "http://files.hospital.example/ai/2.jpg",
        "result": 1,
    },
}
