"""Every plugin type the config may name: its config model and how to build it."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.config import PluginSection
from agent.endpoints import Endpoints, RouteDef
from agent.imaging import exams as imaging_exams
from agent.imaging import instances as imaging_instances
from agent.imaging import plugin as imaging
from agent.imaging.plans import CLASSIC, Offer
from agent.lab import config as lab_config
from agent.lab import plugin as lab
from agent.reprocessing import plugin as reprocessing
from agent.simulators import http_cloud, rfid_readers
from agent.simulators import idcas_archive as idcas_archive_sim
from agent.simulators import provincial_imaging as provincial_imaging_sim
from agent.simulators import results_sharing as results_sharing_sim
from agent.simulators import zhejiang_endoscope as zhejiang_endoscope_sim
from agent.uplinks.http import uplink as http_uplink
from agent.uplinks.idcas_archive import routes as idcas_archive_routes
from agent.uplinks.idcas_archive import statistics as idcas_archive_statistics
from agent.uplinks.idcas_archive import uplink as idcas_archive_uplink
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.insurance_imaging import uplink as insurance_imaging_uplink
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.mqtt import uplink as mqtt_uplink
from agent.uplinks.mqtt.config import MqttUplinkConfig
from agent.uplinks.provincial_imaging import orders as provincial_orders
from agent.uplinks.provincial_imaging import routes as provincial_routes
from agent.uplinks.provincial_imaging import uplink as provincial_imaging_uplink
from agent.uplinks.provincial_imaging.config import ProvincialImagingConfig
from agent.uplinks.results_sharing import daily as results_sharing_daily
from agent.uplinks.results_sharing import gate as results_sharing_gate
from agent.uplinks.results_sharing import uplink as results_sharing_uplink
from agent.uplinks.results_sharing.config import ResultsSharingConfig
from agent.uplinks.zhejiang_endoscope import feeders as zhejiang_endoscope_feeders
from agent.uplinks.zhejiang_endoscope import uplink as zhejiang_endoscope_uplink
from agent.uplinks.zhejiang_endoscope.config import ZhejiangEndoscopeConfig
from drivers import mqtt, report_folder, synthetic
from drivers.rfid import reader as rfid_reader
from drivers.washer import folder as washer_folder
from drivers.washer import printer as washer_printer


@dataclass(frozen=True, slots=True)
class Plugin:
    """A plugin type: config model, factory, domain handlers, start-up journal jobs, tasks,
    served endpoints, an uplink's forwarding plan."""

    model: type[PluginSection]
    build: Callable[[str, Any], Any] | None = None
    handlers: Callable[[str, Any], list[Any]] | None = None
    startup: Callable[[str, Any], list[Callable[[sqlite3.Connection], Any]]] | None = None
    # Background jobs of a domain (e.g. a scheduler that journals "study stable" events) or an
    # uplink (a daily reconciliation); each is run supervised as `job(ctx)` with the runtime's
    # TaskContext.
    tasks: Callable[[str, Any], list[Callable[[Any], Awaitable[None]]]] | None = None
    # HTTP routes the platform (or the hospital's PACS/HIS) calls on the agent, served on the
    # plugin's own listener when its settings enable it (agent/web/listener.py).
    endpoints: Callable[[str, Any], Endpoints] | None = None
    # An uplink's forwarding plan: the domains' offers it receives (e.g. imaging.Offer); a domain
    # naming it in forward_to sends it only those, and an uplink asking for none is a config error.
    plan: frozenset[str] = frozenset()
    # An uplink's check of a section that names it (a domain feeding it records): lines
    # "key: reason" for values the platform's tables would refuse, so check-config fails at start.
    check_feeder: Callable[[Any, Any], list[str]] | None = None
    # An uplink's routes on the local API, and on its own listener, that need the built uplink
    # (e.g. its token cache): called with (name, section, uplink).
    api_routes: Callable[[str, Any, Any], list[RouteDef]] | None = None
    uplink_endpoints: Callable[[str, Any, Any], Endpoints] | None = None


class Registry(MutableMapping[str, Plugin]):
    """Plugin types by name. A type given as a function returning its Plugin is made on its
    first lookup, so what it imports (the DICOM stack: pydicom, pynetdicom, Pillow, the codecs)
    is loaded only by an agent whose config names it."""

    def __init__(self, entries: dict[str, Plugin | Callable[[], Plugin]]) -> None:
        self._entries = entries  # the table itself: what is made replaces its function there

    def __getitem__(self, name: str) -> Plugin:
        entry = self._entries[name]
        if not isinstance(entry, Plugin):
            entry = self._entries[name] = entry()
        return entry

    def __setitem__(self, name: str, plugin: Plugin) -> None:
        self._entries[name] = plugin

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _remote_imaging() -> Plugin:
    # Its C-STORE forwarding is the DICOM driver's lean storage association, handed over here.
    from agent.uplinks.remote_imaging import uplink
    from agent.uplinks.remote_imaging.config import RemoteImagingConfig
    from drivers.dicom.forward import FORWARDING

    return Plugin(
        RemoteImagingConfig, partial(uplink.build, forwarding=FORWARDING), plan=SEED_003_PLAN
    )


def _dicom_scp() -> Plugin:
    # The Q/R SCP and image capture read the imaging domain's study index (drivers never import
    # domains: the wiring hands it to them).
    from agent.imaging.study_index import StudyIndexReader
    from drivers.dicom import scp

    return Plugin(scp.DicomScpConfig, partial(scp.build, study_index=StudyIndexReader))


def _image_capture() -> Plugin:
    from agent.imaging.study_index import StudyIndexReader
    from drivers.dicom import capture
    from drivers.dicom.capture_config import ImageCaptureConfig

    return Plugin(ImageCaptureConfig, partial(capture.build, study_index=StudyIndexReader))


def _remote_imaging_simulator() -> Plugin:
    from agent.simulators import remote_imaging

    return Plugin(remote_imaging.RemoteImagingSimulatorConfig, remote_imaging.build)


def _insurance_imaging_simulator() -> Plugin:
    from agent.simulators import insurance_imaging

    return Plugin(insurance_imaging.InsuranceImagingSimulatorConfig, insurance_imaging.build)


def _demo_traffic() -> Plugin:
    from agent.simulators import demo_traffic

    return Plugin(demo_traffic.DemoTrafficConfig, demo_traffic.build)


# Seed 003: each exam pushed once its study is stable, then the study's images by C-STORE, and
# the statistics slots.
SEED_003_PLAN = frozenset(
    {Offer.EXAM_PUSH, Offer.IMAGES, Offer.STATISTICS, Offer.EXAM_WITHOUT_IMAGES}
)
_UPLINKS: dict[str, Plugin | Callable[[], Plugin]] = {
    # The generic JSON POST forwards what it is given: what imaging offered before plans.
    "http": Plugin(
        http_uplink.HttpUplinkConfig, http_uplink.build, http_uplink.handlers, plan=CLASSIC
    ),
    # Seed 000's tables also check what the reprocessing domain's config feeds into records.
    "zhejiang_endoscope": Plugin(
        ZhejiangEndoscopeConfig,
        zhejiang_endoscope_uplink.build,
        check_feeder=lambda uplink, domain: zhejiang_endoscope_feeders.check(
            uplink, reprocessing.fed_values(domain) if reprocessing.feeds_records(domain) else ()
        ),
    ),
    "mqtt": Plugin(MqttUplinkConfig, mqtt_uplink.build),
    "remote_imaging": _remote_imaging,
    # Seed 004: the cloud's front-end pulls reports and images from its listener; we ask it for
    # each audited report's QR link.
    "insurance_imaging": Plugin(
        InsuranceImagingConfig,
        insurance_imaging_uplink.build,
        # 4.3: a QR link asked for each audited report; 4.5: deletions notified
        plan=frozenset({Offer.REPORT_AUDITED, Offer.STUDY_DELETED}),
        endpoints=partial(
            insurance_imaging_uplink.endpoints,
            exams=imaging_exams.QUERIES,
            images=imaging_instances.QUERIES,
        ),
    ),
    # Seed 002: signed page links and WebApis for HIS/PACS; print flags and the daily
    # recognition statistics through the outbox.
    "idcas_archive": Plugin(
        IdcasArchiveConfig,
        idcas_archive_uplink.build,
        handlers=idcas_archive_statistics.handlers,
        tasks=idcas_archive_statistics.tasks,
        api_routes=idcas_archive_routes.api_routes,
        uplink_endpoints=idcas_archive_routes.endpoints,
    ),
    # Seed 001: each audited report's index (again on correction), then its report PDFs.
    "results_sharing": Plugin(
        ResultsSharingConfig,
        results_sharing_uplink.build,
        handlers=results_sharing_daily.handlers,
        tasks=results_sharing_daily.tasks,
        # 检查8-12: the viewer gate, UID query and WADO-URI other hospitals call
        endpoints=partial(results_sharing_gate.endpoints, images=imaging_instances.QUERIES),
        plan=frozenset({Offer.REPORT_AUDITED, Offer.REPORT_FILES}) | lab_config.ALL,
    ),
    # Seed 003 §3.4 (scenario 3): HIS orders posted to the local API go to SynApplyInfo (SOAP);
    # the provincial platform calls SynStatusInfo on the listener.
    "provincial_imaging": Plugin(
        ProvincialImagingConfig,
        provincial_imaging_uplink.build,
        handlers=provincial_orders.handlers,
        api_routes=provincial_routes.api_routes,
        endpoints=provincial_routes.endpoints,
    ),
}
UPLINKS = Registry(_UPLINKS)
_SOURCES: dict[str, Plugin | Callable[[], Plugin]] = {
    "synthetic": Plugin(synthetic.SyntheticConfig, synthetic.build),
    "rfid_reader": Plugin(rfid_reader.RfidReaderConfig, rfid_reader.build),
    "mqtt_rfid": Plugin(mqtt.MqttRfidConfig, mqtt.build),
    "washer_printer": Plugin(washer_printer.WasherPrinterConfig, washer_printer.build),
    "washer_folder": Plugin(washer_folder.WasherFolderConfig, washer_folder.build),
    # Report PDFs exported into a folder (seed 001: systems that can only export files).
    "report_folder": Plugin(report_folder.ReportFolderConfig, report_folder.build),
    "dicom_scp": _dicom_scp,
    "image_capture": _image_capture,
}
SOURCES = Registry(_SOURCES)
_SIMULATORS: dict[str, Plugin | Callable[[], Plugin]] = {
    "http_cloud": Plugin(http_cloud.HttpCloudConfig, http_cloud.build),
    "rfid_readers": Plugin(rfid_readers.RfidReadersConfig, rfid_readers.build),
    "zhejiang_endoscope": Plugin(
        zhejiang_endoscope_sim.ZhejiangEndoscopeSimulatorConfig, zhejiang_endoscope_sim.build
    ),
    "remote_imaging": _remote_imaging_simulator,
    "insurance_imaging": _insurance_imaging_simulator,
    "results_sharing": Plugin(
        results_sharing_sim.ResultsSharingSimulatorConfig, results_sharing_sim.build
    ),
    "demo_traffic": _demo_traffic,
    "idcas_archive": Plugin(idcas_archive_sim.IdcasArchiveSimulatorConfig, idcas_archive_sim.build),
    "provincial_imaging": Plugin(
        provincial_imaging_sim.ProvincialImagingSimulatorConfig, provincial_imaging_sim.build
    ),
}
SIMULATORS = Registry(_SIMULATORS)
_DOMAINS: dict[str, Plugin | Callable[[], Plugin]] = {
    "imaging": Plugin(
        imaging.ImagingConfig,
        handlers=imaging.handlers,
        tasks=imaging.tasks,
        startup=imaging.startup,
    ),
    "lab": Plugin(lab.LabConfig, handlers=lab.handlers),
    "reprocessing": Plugin(
        reprocessing.ReprocessingConfig,
        handlers=reprocessing.handlers,
        startup=reprocessing.startup,
    ),
}
DOMAINS = Registry(_DOMAINS)
PLUGIN_KINDS: dict[str, Registry] = {
    "uplinks": UPLINKS,
    "sources": SOURCES,
    "simulators": SIMULATORS,
    "domains": DOMAINS,
}
