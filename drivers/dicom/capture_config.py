"""[sources.<name>] type = "image_capture": every key, with the defaults the docs state."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.config import ConfigPath, PluginSection, Seconds, TimeZoneName
from drivers.dicom import convert


class ImageCaptureConfig(PluginSection):
    """[sources.<name>] type = "image_capture" """

    path: ConfigPath
    image_suffixes: Annotated[list[str], Field(min_length=1)] = [".jpg", ".jpeg"]
    ignore: list[str] = [".*", "~*", "*~", "*.tmp", "*.temp", "*.part", "*.partial", "*.swp"]
    settle: Annotated[float, Field(ge=0)] = 2.0
    pair_timeout: Seconds = 300.0
    processed_dir: ConfigPath | None = None
    rejected_dir: ConfigPath | None = None
    max_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024)] = 64 * 1024 * 1024
    sidecar_encoding: Literal["utf-8", "gb18030"] = "utf-8"
    ignore_unknown_keys: bool = False
    timezone: TimeZoneName = "Asia/Shanghai"
    uid_root: str | None = None
    manufacturer: str = ""
    institution: str = ""
    station: str = ""
    burned_in_annotation: Literal["YES", "NO"] = "YES"
    retry_initial: Seconds = 1.0
    retry_max: Seconds = 60.0
    # Network shares (SMB, NFS) deliver no change notifications: also list the folder this often.
    rescan_interval: Seconds = 30.0

    @field_validator("image_suffixes")
    @classmethod
    def _suffixes(cls, value: list[str]) -> list[str]:
        if any(not s.startswith(".") or s.lower() == ".json" for s in value):
            raise ValueError("suffixes start with a dot, e.g. '.jpg', and cannot be '.json'")
        return [s.lower() for s in value]

    @field_validator("uid_root")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value is not None and not convert.is_uid_root(value):
            raise ValueError("a UID root: digits and dots, ending with a dot, at most 32 chars")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ImageCaptureConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self
