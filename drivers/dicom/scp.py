"""The DICOM storage SCP source: config, the pynetdicom AE, and `run` bridging it to the loop."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Annotated, Any, Literal

import structlog
from pydantic import AfterValidator, Field, field_validator, model_validator
from pynetdicom import AE, AllStoragePresentationContexts, _config, dimse_messages
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from agent.config import PluginSection, Seconds, Section
from agent.dicom_wakeups import use_wakeups
from agent.vocabulary.spool import SpoolLayout
from agent.vocabulary.study_index import IndexUnavailable, StudyIndexFactory
from drivers.base import Driver, DriverContext
from drivers.dicom.fast_store import FastStore
from drivers.dicom.gate import ConnectionGate, GateLimits
from drivers.dicom.peer_log import route_library_records
from drivers.dicom.qr import QueryRetrieve
from drivers.dicom.receiver import Network, Receiver
from drivers.dicom.recovery import recover_spool
from drivers.dicom.server import GatedServer
from drivers.dicom.store import Spool
from drivers.dicom.store_link import LinkSettings, MovingAE
from drivers.dicom.syntaxes import (
    ANY_AE,
    TRANSFER_SYNTAXES,
    UNCOMPRESSED,
    SyntaxPolicy,
    syntax_uid,
    use_policy,
)
from drivers.transport import Backoff

log = structlog.get_logger(__name__)


def _ae_title(value: str) -> str:
    if not value.strip() or len(value) > 16 or not value.isascii() or "\\" in value:
        raise ValueError("must be 1–16 ASCII characters without a backslash")
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value.strip()


AETitle = Annotated[str, AfterValidator(_ae_title)]


class MoveDestination(Section):
    """Where a C-MOVE to an AE title sends the images."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)]


class DicomScpConfig(PluginSection):
    """[sources.<name>] type = "dicom_scp" """

    ae_title: AETitle = "EDGE_AGENT"
    host: str = "0.0.0.0"  # noqa: S104 - modalities reach us over the hospital network
    port: Annotated[int, Field(ge=0, le=65535)] = 11112  # 0: any free port (tests)
    # Required, so that accepting any calling AE is a written decision: [] = any AE.
    allowed_calling_aes: list[AETitle]
    allowed_addresses: list[str] = []  # IPs or CIDRs; [] = any address
    min_free_mb: Annotated[int, Field(ge=0)] = 1024
    max_pdu: Annotated[int, Field(ge=0)] = 131_072  # 0: unlimited
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 10
    # Open connections, before and during their association (None: max_associations + 1, and 2×).
    max_connections_per_address: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_connections: Annotated[int, Field(ge=1, le=10_000)] | None = None
    artim_timeout: Seconds = 10.0  # a new connection's whole A-ASSOCIATE-RQ must arrive by then
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0
    commit_timeout: Seconds = 60.0
    fast_store: bool = True  # plain storage associations bypass pynetdicom's DIMSE threads
    receive: Literal["file", "memory"] = "file"  # pynetdicom's receive (when it serves)
    query_retrieve: bool = True
    move_destinations: dict[AETitle, MoveDestination] = {}
    # Calling AE title (or "*" for the others) → transfer syntaxes (UIDs or pydicom keywords) in
    # the order to accept them when proposed; {} or an AE without one: the sender's order.
    transfer_syntax_preference: dict[str, list[str]] = {}
    restart_initial: Seconds = 1.0
    restart_max: Seconds = 60.0

    @field_validator("allowed_addresses")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as err:
                raise ValueError(f"{value!r} is not an IP address or CIDR network") from err
        return values

    @field_validator("transfer_syntax_preference")
    @classmethod
    def _syntaxes(cls, values: dict[str, list[str]]) -> dict[str, list[str]]:
        for ae in values:
            if ae != ANY_AE:
                _ae_title(ae)
        return {ae.strip(): [syntax_uid(s) for s in order] for ae, order in values.items()}

    @model_validator(mode="after")
    def _queries_need_an_allow_list(self) -> DicomScpConfig:
        # Storing needs trust in the sender; querying and retrieving hand out every patient's
        # images, so an open port must not serve them to whoever asks.
        if self.query_retrieve and not (self.allowed_calling_aes or self.allowed_addresses):
            raise ValueError(
                "query_retrieve needs allowed_calling_aes or allowed_addresses "
                "(or set query_retrieve = false)"
            )
        return self

    def gate_limits(self) -> GateLimits:
        """The connection gate's limits, defaults filled in."""
        return GateLimits(
            # One more than can be served: a peer over max_associations still gets its
            # A-ASSOCIATE-RJ (busy), and a connection being closed does not refuse the next one.
            per_address=self.max_connections_per_address or self.max_associations + 1,
            total=self.max_connections or 2 * self.max_associations,
            artim_timeout=self.artim_timeout,
        )

    def networks(self) -> list[Network]:
        """The allowed peer networks."""
        return [ipaddress.ip_network(value, strict=False) for value in self.allowed_addresses]


class DicomScp(Driver):
    """Listens for associations; every C-STORE is answered only after its event is committed."""

    def __init__(
        self, name: str, config: DicomScpConfig, study_index: StudyIndexFactory | None = None
    ) -> None:
        super().__init__(name)
        if config.query_retrieve and study_index is None:
            raise ValueError("query_retrieve needs the imaging domain's study index")
        self.config = config
        self.study_index = study_index
        self.receiver: Receiver | None = None
        self.fast_store: FastStore | None = None
        self.address: tuple[str, int] | None = None
        self.gate: ConnectionGate | None = None
        self.ready = asyncio.Event()

    def is_online(self) -> bool:
        """True while listening."""
        return self.address is not None

    def stats(self) -> dict[str, int]:
        """Instances stored, refusals by reason, associations and refused connections (counters)."""
        r = self.receiver
        if r is None:
            return {}
        refused = {} if self.gate is None else dict(self.gate.refused)  # one atomic copy
        connections = {f"connection_{reason}": n for reason, n in refused.items()}
        return {"stored": r.stored, **r.refused, "associations": r.associations, **connections}

    async def run(self, ctx: DriverContext) -> None:
        """Serve until cancelled; a port that cannot be bound is retried with backoff."""
        spool = Spool(ctx.state_dir, reserve_mb=self.config.min_free_mb)
        await asyncio.to_thread(spool.prepare)
        await self._recover(spool, ctx)
        self.receiver = Receiver(
            self.name,
            ctx,
            asyncio.get_running_loop(),
            spool,
            allowed_aes=self.config.allowed_calling_aes,
            allowed_networks=self.config.networks(),
            min_free_mb=self.config.min_free_mb,
            commit_timeout=self.config.commit_timeout,
            receive=self.config.receive,
        )
        _configure_pynetdicom(spool, self.config.receive)
        route_library_records()
        if not self.config.allowed_calling_aes and not self.config.allowed_addresses:
            log.warning("dicom.scp_open_to_any_peer", source=self.name)
        ae, handlers, fast = self._make_ae(ctx)
        self.fast_store = fast
        server = await self._start(ae, handlers, fast)
        try:
            await asyncio.Future()  # serve until cancelled
        finally:
            if fast is not None:
                fast.stop()
            await asyncio.to_thread(ae.shutdown)
            await asyncio.to_thread(spool.reservoir.close)
            self.ready.clear()
            log.info("dicom.scp_stopped", source=self.name, port=server.server_address[1])

    async def _recover(self, spool: Spool, ctx: DriverContext) -> None:
        """Before listening: journal the spool files a crash or a failed commit left unknown."""
        if self.study_index is None:
            return
        index = self.study_index(ctx.state_dir / "journal.db")
        try:
            await recover_spool(spool, index, self.name, ctx.emit)
        except (OSError, IndexUnavailable) as err:  # intake must not wait for it: said, then on
            log.error("dicom.spool_scan_failed", source=self.name, error=str(err))

    def _make_ae(self, ctx: DriverContext) -> tuple[AE, list[Any], FastStore | None]:
        assert self.receiver is not None
        config = self.config
        ae = MovingAE(ae_title=config.ae_title)
        ae.maximum_pdu_size = config.max_pdu
        ae.maximum_associations = config.max_associations
        ae.acse_timeout = config.acse_timeout
        ae.dimse_timeout = config.dimse_timeout
        ae.network_timeout = config.network_timeout
        policy = SyntaxPolicy(config.transfer_syntax_preference)
        use_policy(ae, policy)
        ae.add_supported_context(Verification, UNCOMPRESSED)
        for context in AllStoragePresentationContexts:
            # scp_role: a C-GET requestor receives the images over its own association.
            ae.add_supported_context(
                str(context.abstract_syntax), TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        fast = None
        if config.fast_store:
            fast = FastStore(
                self.receiver,
                ae.supported_contexts,  # storage and verification only: Q/R is pynetdicom's
                policy,
                max_pdu=config.max_pdu,
                max_associations=config.max_associations,
                acse_timeout=config.acse_timeout,
                network_timeout=config.network_timeout,
                implementation_uid=str(ae.implementation_class_uid),
                implementation_version=ae.implementation_version_name or "",
            )
        handlers = self.receiver.handlers()
        if config.query_retrieve and self.study_index is not None:
            qr = _query_retrieve(ctx, config, self.study_index, ae)
            if qr is not None:
                for sop_class in qr.contexts():
                    ae.add_supported_context(sop_class, UNCOMPRESSED)
                handlers.extend(qr.handlers())
        return ae, handlers, fast

    async def _start(self, ae: AE, handlers: list[Any], fast: FastStore | None) -> GatedServer:
        backoff = Backoff(self.config.restart_initial, self.config.restart_max)
        rng = random.Random()
        failures = 0
        address = (self.config.host, self.config.port)
        while True:
            try:
                server = await asyncio.to_thread(
                    _serve, ae, address, handlers, fast, (self.name, self.config.gate_limits())
                )
            except OSError as err:
                failures += 1
                if failures == 1:
                    log.error(
                        "dicom.scp_bind_failed",
                        source=self.name,
                        port=self.config.port,
                        error=err.strerror or str(err),
                    )
                await asyncio.sleep(backoff.delay(failures, rng))
                continue
            assert server is not None
            host, port = server.server_address[:2]
            self.gate = server.gate
            self.address = (str(host), int(port))
            log.info(
                "dicom.scp_listening",
                source=self.name,
                ae_title=self.config.ae_title,
                host=host,
                port=port,
                recovered_after=failures or None,
            )
            self.ready.set()
            return server


def _serve(
    ae: AE,
    address: tuple[str, int],
    handlers: list[Any],
    fast: FastStore | None,
    gate: tuple[str, GateLimits],
) -> GatedServer:
    """Bind and start the gate's thread (what `AE.start_server` does, with our server)."""
    server = ae.make_server(address, evt_handlers=handlers, server_class=GatedServer)
    assert isinstance(server, GatedServer)
    server.fast = fast
    ae._servers.append(server)  # `ae.shutdown` stops the AE's servers; ours is one of them
    server.start(*gate)
    return server


def _configure_pynetdicom(spool: Spool, receive: Literal["file", "memory"]) -> None:
    """Process-wide pynetdicom settings; the chunked receive writes into the spool's tmp/."""
    # Identifiers of C-FIND/C-MOVE carry patient data: never into the log.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.STORE_RECV_CHUNKED_DATASET = receive == "file"
    use_wakeups()  # and reactor_pause: a C-STORE's response reaches the thread that sent it
    # pynetdicom has no per-AE temporary folder; its factory is replaced so that the received
    # bytes land on the spool's filesystem (a rename, not a copy) and a full disk is answered.
    setattr(dimse_messages, "NamedTemporaryFile", lambda *_, **__: spool.new_file())  # noqa: B010


def _query_retrieve(
    ctx: DriverContext, config: DicomScpConfig, study_index: StudyIndexFactory, ae: AE
) -> QueryRetrieve:
    """The Q/R service over the journal's study index and the spool."""
    destinations = {ae: (d.host, d.port) for ae, d in config.move_destinations.items()}
    index = study_index(ctx.state_dir / "journal.db")
    spool = SpoolLayout.of(ctx.state_dir).root
    return QueryRetrieve(index, destinations, config.ae_title, spool, LinkSettings.of(ae))


def build(name: str, config: DicomScpConfig, study_index: StudyIndexFactory) -> DicomScp:
    """Make the SCP source from its validated config and the imaging domain's study index."""
    return DicomScp(name, config, study_index)
