"""[uplinks.<name>] type = "idcas_archive": every key, with the defaults the docs state."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from Crypto.PublicKey import RSA
from pydantic import Field, HttpUrl, model_validator

from agent.config import Seconds, Secret, Section, TimeZoneName, UnreadSecret
from agent.crypto import des3, rsa
from agent.errors import CryptoError
from agent.listener_config import PlatformListener
from agent.uplinks.idcas_archive.links import LinkKeys
from agent.uplinks.idcas_archive.pages import PAGES
from agent.uplinks.kit.config import HttpConnectionSection

DES_KEY_LENGTHS = (16, 24)  # bytes of key text: two- or three-key 3DES (the seed's test key: 16)
HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


class RecognitionStatistics(Section):
    """[uplinks.<name>.statistics]: 6.2, the previous day's counts, posted daily at `at`."""

    @model_validator(mode="after")
    def _stations_when_relayed(self) -> RecognitionStatistics:
        if self.source == "relayed" and self.work_stations is None:
            raise ValueError("work_stations is required when source is relayed")
        return self

    enabled: bool = False
    at: Annotated[str, Field(pattern=HHMM.pattern)] = "02:00"  # local time (timezone)
    work_stations: Annotated[int, Field(ge=0)] | None = None  # default when HIS posts none
    source: Literal["his", "relayed"] = "his"  # patients_cnt: posted by HIS, or the visits
    # whose recognition records (6.1) the agent relayed that day (HIS's counts still win)
    catch_up_days: Annotated[int, Field(ge=1, le=31)] = 2  # days looked back after downtime
    date_field: str | None = None  # the body has no date: name one once the vendor adds it


class IdcasArchiveConfig(HttpConnectionSection):
    """[uplinks.<name>] type = "idcas_archive": seed 002, the IDCAS cloud archive."""

    auth_url: HttpUrl  # {auth-center}: /connect/token below it
    gateway_url: HttpUrl  # {api-gateway}, e.g. http://10.222.23.65:8888/api
    doc_gateway_url: HttpUrl  # {doc-gateway}, e.g. http://10.222.23.65:8888/doc
    portal_url: HttpUrl  # {domain}: the pages HIS and apps open, e.g. https://portal.example
    org_code: Annotated[str, Field(min_length=1, max_length=64)]  # 医疗机构组织机构代码
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: Secret
    username: Annotated[str, Field(min_length=1)]
    password: Secret
    rsa_public_key: str | None = None  # pinned key (PEM, Base64 DER, XML): not fetched (3.2.2)
    rsa_padding: rsa.Padding = "pkcs1v15"  # Java RSA/ECB/PKCS1Padding
    des_key: Secret  # 3DES key text, 16 or 24 bytes
    des_iv: str = des3.SEED_002_IV  # not in the seed: recovered from its examples
    md5_key: Secret
    sev: Secret  # the RSA-encrypted clinician account id the platform's engineer gives
    page_sev: dict[str, Secret] = {}  # a page's own sev (e.g. repeat-reminder's)
    source: str = "his"  # the `source` of the PC pages: the table says HIS, the examples his
    token_numbers: bool = True  # 6.3's short/int fields as JSON numbers in the token
    timezone: TimeZoneName = "Asia/Shanghai"  # of every timestamp and of the 02:00 statistics
    success_codes: list[int] = [0]  # envelope codes that mean success (3.2.2: 0 成功 -1 失败)
    client_token_lifetime: Seconds = 3600.0  # when the answer states none
    token_lifetime: Seconds = 43200.0  # user token, when the answer states none (12 h, 3.2.3)
    token_refresh_margin: Annotated[float, Field(ge=0)] = 300.0
    webapi_timeout: Seconds = 10.0  # a synchronous WebApi call for HIS/PACS: then 503/504
    open_on_api: bool = True  # serve GET /idcas/open/{page} on the local API (needs its token)
    listener: PlatformListener = PlatformListener()  # HIS-facing: GET /idcas/open/{page} only
    bool_style: Literal["lower", "title"] = "lower"  # 7.9 cancel_flag: true, or True
    statistics: RecognitionStatistics = RecognitionStatistics()

    @model_validator(mode="after")
    def _keys(self) -> IdcasArchiveConfig:
        key = self.des_key.get_secret_value().encode("utf-8")
        if not isinstance(self.des_key, UnreadSecret) and len(key) not in DES_KEY_LENGTHS:
            raise ValueError(
                f"des_key: a 3DES key of {len(key)} bytes; the platform issues 16 or 24"
                " (the seed's test key eWorldTomTaw#7=* has 16)"
            )
        if len(self.des_iv.encode("utf-8")) != des3.BLOCK:
            raise ValueError(f"des_iv: the 3DES IV must be {des3.BLOCK} bytes")
        unknown = sorted(set(self.page_sev) - set(PAGES))
        if unknown:
            raise ValueError(f"page_sev: no page {', '.join(unknown)}; known: {sorted(PAGES)}")
        if self.rsa_public_key is not None:
            self.pinned_key()
        return self

    def pinned_key(self) -> RSA.RsaKey | None:
        """The configured public key, if any (ValueError naming rsa_public_key if unusable)."""
        if self.rsa_public_key is None:
            return None
        try:
            key = rsa.load_key(self.rsa_public_key, "rsa_public_key")
        except CryptoError as err:
            raise ValueError(str(err)) from None
        if key.has_private():
            raise ValueError("rsa_public_key: a private key; give the platform's public key")
        return key

    def link_keys(self) -> LinkKeys:
        """The keys the link builder signs with."""
        return LinkKeys(
            des_key=self.des_key.get_secret_value(),
            md5_key=self.md5_key.get_secret_value(),
            sev=self.sev.get_secret_value(),
            des_iv=self.des_iv,
            page_sev={k: v.get_secret_value() for k, v in self.page_sev.items()},
            source=self.source,
            numbers=self.token_numbers,
        )

    def token_timing(self) -> tuple[float, float]:
        """(user token lifetime, refresh margin)."""
        return self.token_lifetime, self.token_refresh_margin

    def auth(self, path: str) -> str:
        """`path` on the auth centre."""
        return _join(self.auth_url, path)

    def gateway(self, path: str) -> str:
        """`path` on the API gateway."""
        return _join(self.gateway_url, path)

    def doc_gateway(self, path: str) -> str:
        """`path` on the document gateway."""
        return _join(self.doc_gateway_url, path)

    def portal(self) -> str:
        """The portal's base URL without a trailing slash."""
        return str(self.portal_url).rstrip("/")


def _join(base: HttpUrl, path: str) -> str:
    return f"{str(base).rstrip('/')}/{path.lstrip('/')}"
