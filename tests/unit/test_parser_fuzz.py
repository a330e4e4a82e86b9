"""Every sans-I/O device parser under random and mutated input: only its own error, resync, linear.

A short seeded run is part of the suite; `pytest -m slow` runs many more examples.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dicom.errors import CaptureError
from drivers.dicom.sidecar import parse_sidecar
from drivers.mqtt import Malformed, MqttRfidConfig, Tap, decode
from drivers.rfid import chafon
from drivers.rfid.chafon import ChafonParser, inventory_answer
from drivers.rfid.decimal_lines import DecimalLineParser
from drivers.rfid.framing import FrameParser
from drivers.rfid.line_pattern import PatternLineParser
from drivers.rfid.rdm6300 import Rdm6300Parser
from drivers.rfid.rdm6300 import encode as rdm6300_frame
from drivers.washer import escpos
from drivers.washer.assembler import ReceiptAssembler
from drivers.washer.formats import csv_log, thermal_cn, xml_log
from drivers.washer.formats.template import TemplateConfig, TemplateParser
from drivers.washer.receipt import ReceiptError, WasherCycle, cycle_payload
from drivers.washer.receipt import decode as decode_receipt
from tests.unit.test_washer_template import CF200

FIXTURES = Path(__file__).parents[1] / "fixtures" / "washer"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SHORT = settings(max_examples=150)  # the suite's profile is seeded (tests/conftest.py)
LONG = settings(max_examples=5000)

# --- RFID readers ----------------------------------------------------------------------------

FAMILIES: dict[str, tuple[Callable[[], FrameParser], bytes, bytes]] = {
    # parser, a valid frame, what ends any garbage before it
    "rdm6300": (Rdm6300Parser, rdm6300_frame(bytes.fromhex("0A00D507D0")), b""),
    "chafon": (ChafonParser, inventory_answer([bytes.fromhex("E2000017221101441890")]), b""),
    "decimal": (DecimalLineParser, b"0013961168\r\n", b"\r\n"),
    "regex": (lambda: PatternLineParser(r"ID:(?P<tag>[0-9A-F]+)"), b"ID:00D507D0\r\n", b"\r\n"),
}


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets, as reads from a serial line arrive."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


garbage = st.binary(max_size=600) | st.binary(max_size=300).map(lambda b: b * 3)
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=40)


def feed_all(parser: FrameParser, data: bytes, at: list[int]) -> list[str]:
    return [read.canonical() for chunk in chunked(data, at) for read in parser.feed(chunk)]


def valid_frame_is_read_after(family: str, junk: bytes, at: list[int]) -> None:
    make, frame, separator = FAMILIES[family]
    expected = feed_all(make(), frame, [])
    found = feed_all(make(), junk + separator + frame, at)
    assert found[-len(expected) :] == expected


@pytest.mark.parametrize("family", FAMILIES)
@SHORT
@given(junk=garbage, at=cuts)
def test_rfid_garbage_never_raises_and_a_valid_frame_after_it_is_read(family, junk, at):
    valid_frame_is_read_after(family, junk, at)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@LONG
@given(junk=garbage, at=cuts)
def test_rfid_garbage_long_run(family, junk, at):
    valid_frame_is_read_after(family, junk, at)


def crc_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the size of every frame the Chafon parser checks the CRC of."""
    checked: list[int] = []
    real = chafon.crc16

    def counting(data: bytes) -> int:
        checked.append(len(data))
        return real(data)

    monkeypatch.setattr(chafon, "crc16", counting)
    return checked


@SHORT
@given(junk=garbage, at=cuts)
def test_chafon_checks_each_candidate_frame_once_however_the_bytes_arrive(junk, at, monkeypatch):
    counted = crc_checks(monkeypatch)
    parser = ChafonParser()
    for chunk in chunked(junk, at):
        parser.feed(chunk)
    # At most one check per candidate start where its last byte arrives, one more when it
    # becomes the head: linear in the input, byte-at-a-time or not.
    assert len(counted) <= 2 * len(junk) + 1


@pytest.mark.parametrize(
    "junk",
    [
        b"\xff" * 4000,
        # A head that claims 255 bytes, then a complete (bad) candidate at every offset: a
        # parser that checks them all again on every byte does ~250 checks per byte.
        (b"\xff" + b"\x05" * 254) * 16,
    ],
    ids=["ff", "candidates everywhere"],
)
def test_chafon_resynchronises_byte_by_byte_with_one_check_per_candidate(junk, monkeypatch):
    checked = crc_checks(monkeypatch)
    parser = ChafonParser()
    frame = FAMILIES["chafon"][1]
    reads = [r for byte in junk + frame for r in parser.feed(bytes([byte]))]
    assert [r.canonical() for r in reads] == [r.canonical() for r in ChafonParser().feed(frame)]
    assert len(checked) <= 2 * len(junk) + len(frame)


# --- Washer receipts ------------------------------------------------------------------------

Parse = Callable[[str, tzinfo], WasherCycle]
FORMATS: dict[str, tuple[Parse, str]] = {
    "thermal_cn": (thermal_cn.parse, "thermal_oer_aw.txt"),
    "csv": (csv_log.parse, "cycle_aw03.csv"),
    "xml": (xml_log.parse, "cycle_aw04.xml"),
    "template": (TemplateParser(TemplateConfig.model_validate(CF200)).parse, "template_cf200.txt"),
}


def fixture_text(name: str) -> str:
    return decode_receipt((FIXTURES / name).read_bytes(), "gb18030")


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    """The receipt with a few edits a broken printer or a hostile file could make."""
    text = base
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        match draw(st.sampled_from(["cut", "insert", "delete", "repeat", "digits"])):
            case "cut":
                text = text[:at]
            case "insert":
                text = text[:at] + draw(st.text(max_size=40)) + text[at:]
            case "delete":
                text = text[:at] + text[at + draw(st.integers(1, 80)) :]
            case "repeat":
                text = text[:at] + text[at : at + 60] * draw(st.integers(2, 50)) + text[at:]
            case "digits":
                text = (
                    text[:at] + draw(st.sampled_from(["9" * 400, "0001", "9999", "-"])) + text[at:]
                )
    return text


def parses_or_refuses(parse: Parse, text: str) -> None:
    try:
        cycle = parse(text, SHANGHAI)
    except ReceiptError:
        return
    payload = cycle_payload(cycle, washer="w", fmt="f", sha256="0" * 64, text=text)
    json.dumps(payload, allow_nan=False)  # what the journal will store


@pytest.mark.parametrize("fmt", FORMATS)
@SHORT
@given(data=st.data())
def test_receipt_parsers_raise_only_receipt_errors(fmt, data):
    parse, fixture = FORMATS[fmt]
    parses_or_refuses(parse, data.draw(st.text(max_size=300) | mutated(fixture_text(fixture))))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@LONG
@given(data=st.data())
def test_receipt_parsers_long_run(fmt, data):
    parse, fixture = FORMATS[fmt]
    parses_or_refuses(parse, data.draw(st.text(max_size=2000) | mutated(fixture_text(fixture))))


@SHORT
@given(raw=st.binary(max_size=2000), at=cuts)
def test_escpos_strip_and_receipt_boundaries_never_raise_and_an_idle_gap_resyncs(raw, at):
    escpos.strip(raw)
    assembler = ReceiptAssembler(max_bytes=4096)
    for chunk in chunked(raw, at):
        assembler.feed(chunk)
    assembler.flush()  # the idle gap after the noise
    receipt = (FIXTURES / "printer_oer_aw.bin").read_bytes()
    assert [c.data for c in assembler.feed(receipt)] == [receipt]


# --- Linear time ----------------------------------------------------------------------------

LONG_LINES: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "A" * n,
    "letters then a label": lambda n: "A" * n + " B:",
    "a value then spaces": lambda n: "程序: x" + " " * n + "y",
    "a row then spaces": lambda n: "测漏 12:00" + " " * n + "x",
    "a row then digits": lambda n: "消毒 09:00 - 09:10 " + "1" * n,
    "CJK without a colon": lambda n: "备注:  " + "中" * n,
}


def cpu_seconds(parse: Parse, text: str) -> float:
    best = float("inf")
    for _ in range(5):  # the least disturbed of five runs
        start = time.process_time()
        try:
            parse(text, SHANGHAI)
        except ReceiptError:
            pass
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("shape", LONG_LINES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_parse_time_grows_linearly_with_a_long_line(fmt, shape):
    """8× the line costs about 8× the time (quadratic backtracking would cost 64×)."""
    parse, fixture = FORMATS[fmt]
    base = fixture_text(fixture)
    middle = base.index("\n", len(base) // 2) + 1

    def receipt(n: int) -> str:
        return base[:middle] + LONG_LINES[shape](n) + "\n" + base[middle:]

    small, large = cpu_seconds(parse, receipt(2000)), cpu_seconds(parse, receipt(16000))
    assert large < 20 * max(small, 1e-4), f"{small:.5f} s → {large:.5f} s"


# --- JSON from devices: MQTT taps and capture sidecars ---------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
).map(lambda value: json.dumps({"tag": value, "ts": value, "data": {"uid": value}}).encode())


@SHORT
@given(payload=st.binary(max_size=300) | json_like, topic=st.text(max_size=40))
def test_mqtt_payloads_are_a_tap_or_a_bounded_reason(payload, topic):
    for overrides in ({}, {"time_field": "ts", "tag_field": "data.uid"}, {"reader_from_topic": 1}):
        config = MqttRfidConfig.model_validate(
            {"type": "mqtt_rfid", "host": "localhost", "topic": "#", **overrides}
        )
        found = decode(config, topic, payload)
        if isinstance(found, Tap):
            assert found.tag.isprintable() and found.reader_id.isprintable()
        else:
            assert isinstance(found, Malformed)


@SHORT
@given(raw=st.binary(max_size=300) | json_like)
def test_sidecars_are_valid_or_a_capture_error(raw):
    try:
        parse_sidecar(raw)
    except CaptureError:
        pass
