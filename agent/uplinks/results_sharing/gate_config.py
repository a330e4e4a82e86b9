"""[uplinks.<name>.gate]: the agent as the hospital being viewed (seed 001 检查8-12)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from agent.config import Section
from agent.listener_config import PlatformListener

RoutePath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.-]*$")]
Param = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


class ImageGate(Section):
    """The viewer gate, the UID query and WADO-URI, on a listener bound to the government
    network or VPN; every key is verified with the platform (fail closed)."""

    listener: PlatformListener = PlatformListener()
    viewer_path: RoutePath = "/view"
    uid_path: RoutePath = "/uids"
    wado_path: RoutePath = "/wado"
    viewer_key_param: Param = "viewerKey"  # the seed names neither parameter
    download_key_param: Param = "downloadKey"
    # Where a verified viewer goes: the hospital's PACS web viewer; {study_uid} and {accession}
    # are filled in. Required when the listener is enabled.
    viewer_redirect: Annotated[str, Field(pattern=r"^https?://")] | None = None
    key_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 300.0  # positive answers only

    @model_validator(mode="after")
    def _redirect_when_enabled(self) -> ImageGate:
        if self.listener.enabled and self.viewer_redirect is None:
            raise ValueError("viewer_redirect is required when the listener is enabled")
        return self
