"""Time zones where the OS has no zone database (Windows): the tzdata package answers."""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from pydantic import TypeAdapter

from agent.config import TimeZoneName

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


@pytest.fixture
def no_system_zones() -> Iterator[None]:
    """zoneinfo as on Windows: no /usr/share/zoneinfo to search."""
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def test_a_configured_zone_is_known_without_a_system_database(no_system_zones: None):
    assert zoneinfo.TZPATH == ()
    name = TypeAdapter(TimeZoneName).validate_python("Asia/Urumqi")  # what the config checks
    zone = zoneinfo.ZoneInfo(name)
    assert datetime(2026, 12, 7, 12, tzinfo=zone).utcoffset() == timedelta(hours=6)


def test_the_package_brings_the_zone_database_on_windows():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    needed = [Requirement(r) for r in project["dependencies"]]
    tzdata = [r for r in needed if r.name == "tzdata"]
    assert len(tzdata) == 1 and tzdata[0].marker is not None
    assert tzdata[0].marker.evaluate({"sys_platform": "win32"})
