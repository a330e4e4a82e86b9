"""Seed 004 §4.2 方式一: the front-end's Portal AE echoes the agent's Q/R SCP and C-MOVEs a
study to itself; every image arrives as the agent stored it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from agent import reactor_pause
from agent.imaging.study_index import StudyIndexReader
from agent.simulators.insurance_imaging import (
    InsuranceImagingSimulator,
    InsuranceImagingSimulatorConfig,
)
from drivers.dicom.qr import QueryRetrieve
from drivers.dicom.retrieve import dataset_offset
from drivers.dicom.store_link import LinkSettings, MovingAE
from tests.integration.test_dicom_move_race import STUDY, study
from tests.mosquitto import free_port


async def test_the_portal_ae_pulls_a_study_byte_for_byte(tmp_path: Path) -> None:
    reactor_pause.install()
    state = tmp_path / "state"
    files = study(state)
    config = InsuranceImagingSimulatorConfig(type="insurance_imaging", portal_port=free_port())
    simulator = InsuranceImagingSimulator("insurance", config)
    index = StudyIndexReader(state / "journal.db")
    destinations = {config.portal_ae: ("127.0.0.1", config.portal_port)}  # move_destinations
    ae = MovingAE("EDGE")
    qr = QueryRetrieve(index, destinations, "EDGE", state / "spool", LinkSettings.of(ae))
    for uid in [*qr.contexts(), "1.2.840.10008.1.1"]:
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=cast(Any, qr.handlers()))
    assert server is not None
    try:
        pulled = await simulator.pull("127.0.0.1", server.server_address[1], "EDGE", STUDY)
    finally:
        server.shutdown()
    assert (pulled.echo, pulled.status, pulled.failed) == (0x0000, 0x0000, 0)
    assert pulled.images.keys() == files.keys()
    for sop, path in files.items():
        assert pulled.images[sop] == path.read_bytes()[dataset_offset(path) :], sop
