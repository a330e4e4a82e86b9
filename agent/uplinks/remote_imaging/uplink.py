"""The uplink: RSA-signed getToken, JSON exam/push and uploadStatistics, C-STORE of instances."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from agent.dispatch.outcomes import Delivered, Outcome, Reject, Retry
from agent.journal.outbox import OutboxMessage
from agent.uplinks.kit.answers import token_envelope
from agent.uplinks.kit.request import Request, fetch
from agent.uplinks.kit.tokens import Token, TokenError
from agent.uplinks.kit.uplink import HttpPlatformUplink
from agent.uplinks.remote_imaging import codec
from agent.uplinks.remote_imaging.config import RemoteImagingConfig
from agent.uplinks.remote_imaging.dicom import (
    AssociationError,
    Forwarding,
    NoCodecError,
    NoContextError,
    decompressed,
    file_tags,
    identity,
)
from agent.uplinks.remote_imaging.report_image import secondary_capture
from agent.uplinks.remote_imaging.scu_pool import ScuPool
from agent.uplinks.remote_imaging.sign import encrypt, plaintext

T = TypeVar("T")
PUSH_PATH = "v1/exam/push"
STATISTICS_PATH = "v1/exam/uploadStatistics"
MISSING_ALERT = "imaging_instance_missing"  # the spool lost a file it had acknowledged
UNREADABLE_ALERT = "imaging_instance_unreadable"
CODEC_ALERT = "imaging_instance_not_decodable"  # decompress = true, and no codec decodes it
_JSON = {"Content-Type": "application/json"}


class RemoteImagingUplink(HttpPlatformUplink):
    """exam.push and exam.statistics over HTTP; dicom.instance by C-STORE after the push."""

    # Seed 003: a study's images only after its exam push was accepted.
    dead_blocks_key = frozenset({codec.PUSH_KIND})

    def __init__(
        self,
        name: str,
        config: RemoteImagingConfig,
        forwarding: Forwarding,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, config, monotonic=monotonic)
        self.config = config
        self._clock = clock  # the `time` sign field
        self._key = config.rsa_key()
        self._zone = ZoneInfo(config.timezone)
        self._license = config.license.get_secret_value()
        self._idle_check: asyncio.TimerHandle | None = None
        self._last_store = 0.0  # loop time of the last C-STORE
        self._idle_tasks: set[asyncio.Task[bool]] = set()
        host = config.dicom_host or config.base_url.host or "localhost"
        # One association per study; `forwarding` is the driver's lean C-STORE (the wiring's).
        self.forwarding = forwarding
        self.scu = ScuPool(config, host, config.concurrency, forwarding)
        # Each association's sends block a thread for the platform's round trip: threads of our
        # own, one per association (asyncio's default pool has min(32, CPUs + 4): 6 on two
        # cores, which held 8 associations to 6 in flight, 0.48x of the ideal drain).
        self._threads = ThreadPoolExecutor(config.concurrency + 1, f"{name}-dicom")

    async def close(self) -> None:
        """Close the HTTP session and release the DICOM association."""
        if self._idle_check is not None:
            self._idle_check.cancel()
        await asyncio.gather(*self._idle_tasks, return_exceptions=True)
        await super().close()
        await self._in_thread(self.scu.close)
        self._threads.shutdown(wait=False)

    def _release_when_idle(self) -> None:
        """Release the kept association once idle: an unused one would be aborted (and logged as
        an error by pynetdicom) when its network timeout runs out."""
        loop = asyncio.get_running_loop()
        self._last_store = loop.time()
        if self._idle_check is None:  # one timer re-armed when it fires, not one per image
            self._idle_check = loop.call_later(self.config.association_idle, self._check_idle)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_store + self.config.association_idle - loop.time()
        if wait > 0:
            self._idle_check = loop.call_later(wait, self._check_idle)
            return
        self._idle_check = None
        task = asyncio.get_running_loop().create_task(self._in_thread(self.scu.close_if_idle))
        self._idle_tasks.add(task)
        task.add_done_callback(self._idle_tasks.discard)

    async def send(self, message: OutboxMessage) -> Outcome:
        """Deliver one exam.push, exam.statistics or dicom.instance message."""
        kind = message.kind
        if kind in (codec.INSTANCE_KIND, codec.REPORT_IMAGE_KIND):
            if self.config.image_mode != "store":  # the platform pulls them, or has a viewer
                return Delivered(f"not sent: image_mode = {self.config.image_mode!r}")
            if kind == codec.REPORT_IMAGE_KIND:
                return await self._store_report_image(message.order_key, message.payload)
            return await self._store(message.order_key, message.payload)
        body: Any
        if kind == codec.PUSH_KIND:
            body, problems = codec.build_push(message.payload, self.config)
            path = PUSH_PATH
        elif kind == codec.STATISTICS_KIND:
            body, problems = codec.build_statistics(message.payload, self.config)
            path = STATISTICS_PATH
            if not body and not problems:
                return Delivered("nothing to report: no exam class, no statistics_classes")
        else:
            return Reject(f"unknown message kind {kind!r} for remote_imaging")
        if problems:
            return Reject(f"{kind} not sent: {'; '.join(problems)}")
        return await self._post(path, body)

    async def _post(self, path: str, body: Any) -> Outcome:
        async def prepare() -> Request:
            token = await self.tokens.get()
            headers = {
                self.config.token_header: f"{self.config.token_prefix}{token}",
                "Content-Type": "application/json; charset=utf-8",
            }
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            return Request("POST", self.config.url(path), headers, data)

        answer = await self._exchange(prepare)
        if isinstance(answer, Retry):
            return answer
        return codec.http_outcome(self.config, answer.status, answer.text, answer.retry_after)

    async def _fetch_token(self, session: aiohttp.ClientSession) -> Token:
        now = datetime.fromtimestamp(self._clock(), self._zone)
        text = plaintext(
            self.config.sign_fields, self.config.sign_values(), now, self.config.sign_separator
        )
        data = json.dumps({"sign": encrypt(self._key, text, self.config.sign_padding)}).encode()
        request = Request("POST", self.config.url(self.config.token_path), _JSON, data)
        answer = await fetch(session, request)
        envelope = token_envelope(codec.ANSWERS, answer.status, answer.text, "getToken")
        token = codec.parse_token(envelope.data)
        if token is None:
            raise TokenError("getToken answered without a token", unreadable=True)
        return Token(token)  # the seed states no lifetime: token_lifetime

    async def _store(self, key: str, payload: Mapping[str, Any]) -> Outcome:
        try:
            if not self.scu.kept_for(key):  # a study's first image: associate in a thread
                return await self._in_thread(self._store_blocking, key, payload)
            # Its association is kept: no thread hand-off per image (the header is small).
            prepared = self._prepared(payload, whole=True)
            if not isinstance(prepared, tuple):
                return prepared
            instance, source, raw = prepared
            if raw is not None:
                answer = await self.scu.store_on_loop(key, instance, raw)
                if answer is not None:
                    return codec.dicom_outcome(*answer)
            return await self._in_thread(self._send_blocking, key, payload, instance, source)
        finally:
            self._release_when_idle()

    async def _store_report_image(self, key: str, payload: Mapping[str, Any]) -> Outcome:
        try:
            return await self._in_thread(self._report_image_blocking, key, payload)
        finally:
            self._release_when_idle()

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    def _report_image_blocking(self, key: str, payload: Mapping[str, Any]) -> Outcome:
        name = str(payload.get("name") or "")
        if codec.by_path(name, self.config) is not None:
            return Delivered("not sent: report_images = 'path' (listed in the push)")
        try:
            ds = secondary_capture(Path(str(payload.get("path") or "")).read_bytes(), payload)
        except FileNotFoundError:
            return Reject(f"report.image {name}: file missing", alert=MISSING_ALERT)
        except ValueError as err:
            return Reject(f"report.image {name}: {err}")
        except OSError as err:
            return Retry(f"report.image {name}: cannot read the file ({err.strerror or err})")
        try:
            status, comment = self.scu.store(key, identity(ds), ds)
        except NoContextError as err:
            return Reject(f"report.image {name}: {err}")
        except (AssociationError, OSError) as err:
            return Retry(str(err))
        return codec.dicom_outcome(status, comment)

    def _store_blocking(self, key: str, payload: Mapping[str, Any]) -> Outcome:
        prepared = self._prepared(payload)
        if not isinstance(prepared, tuple):
            return prepared
        return self._send_blocking(key, payload, *prepared[:2])

    def _prepared(
        self, payload: Mapping[str, Any], *, whole: bool = False
    ) -> Outcome | tuple[tuple[str, str, str], Path | Dataset, bytes | None]:
        """The instance (SOP class, SOP instance, syntax), what to send and, `whole`: the
        file's bytes when small (read once with its header); or why it is not sent."""
        path = Path(str(payload.get("path") or ""))
        sop = str(payload.get("sop_uid") or "")
        raw: bytes | None = None
        try:
            small = self.forwarding.small(path) if whole else None
            header, raw = small if small is not None else (self.forwarding.header(path), None)
        except FileNotFoundError:
            return Reject(f"dicom.instance {sop}: file missing from the spool", alert=MISSING_ALERT)
        except ValueError as err:
            reason = f"dicom.instance {sop}: unreadable DICOM file ({err})"
            return Reject(reason, alert=UNREADABLE_ALERT)
        except OSError as err:  # a disk hiccup, not a lost file
            return Retry(f"dicom.instance {sop}: cannot read the file ({err.strerror or err})")
        expect = payload.get("expect")
        differ = codec.tag_mismatches(
            expect if isinstance(expect, Mapping) else {}, file_tags(header)
        )
        if differ:
            verb = "differs" if len(differ) == 1 else "differ"
            return Reject(f"{', '.join(differ)} {verb} from the pushed exam")
        syntax = str(header.get("transfer_syntax") or "")
        instance = (
            str(header.get("sop_class_uid") or ""),
            str(header.get("sop_instance_uid") or ""),
            syntax,
        )
        source: Path | Dataset = path
        if self.config.decompress and UID(syntax).is_compressed:
            try:
                ds = decompressed(dcmread(path))
            except NoCodecError as err:
                return Reject(f"dicom.instance {sop}: {err} (decompress = true)", alert=CODEC_ALERT)
            except (OSError, InvalidDicomError, ValueError, EOFError) as err:
                return Retry(f"dicom.instance {sop}: cannot read the file ({type(err).__name__})")
            instance, source, raw = identity(ds), ds, None
        return instance, source, raw

    def _send_blocking(
        self,
        key: str,
        payload: Mapping[str, Any],
        instance: tuple[str, str, str],
        source: Path | Dataset,
    ) -> Outcome:
        sop = str(payload.get("sop_uid") or "")
        try:
            status, comment = self.scu.store(key, instance, source)
        except NoContextError as err:
            return Reject(f"dicom.instance {sop}: {err}")
        except (AssociationError, OSError) as err:
            return Retry(str(err))
        return codec.dicom_outcome(status, comment)


def build(name: str, config: RemoteImagingConfig, forwarding: Forwarding) -> RemoteImagingUplink:
    """Make the uplink from its validated config and the wiring's C-STORE forwarding."""
    return RemoteImagingUplink(name, config, forwarding)
