"""XML cycle logs: a <WasherCycle> element with attributes, phases, channels and a result."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import tzinfo

from drivers.washer.formats.common import (
    Clock,
    check_order,
    disinfectant,
    error_code,
    number,
    phase_kind,
    span,
    verdict,
)
from drivers.washer.receipt import Channel, Phase, ReceiptError, WasherCycle

NAME = "xml"


def parse(text: str, tz: tzinfo) -> WasherCycle:
    """Parse one cycle file; ReceiptError names what is missing or unreadable."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ReceiptError("garbage", "DTDs are not accepted in cycle logs")
    try:
        # Expat (≥ 2.4) bounds entity expansion and DTDs are refused above.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as err:
        reason = (
            "truncated" if "no element found" in str(err) or "unclosed" in str(err) else "garbage"
        )
        raise ReceiptError(reason, f"not well-formed XML: {err}") from err
    if root.tag != "WasherCycle":
        raise ReceiptError("garbage", f"root element <{root.tag}> is not <WasherCycle>")
    program, cycle = root.get("program", "").strip(), root.get("cycle", "").strip()
    if not program or not cycle:
        raise ReceiptError("missing_field", "program and cycle attributes are required")
    result = _text(root, "Result")
    if result is None:
        raise ReceiptError("missing_field", "<Result> is missing")
    clock = Clock(tz, None)
    phases = tuple(_phase(element, clock) for element in root.iterfind("Phases/Phase"))
    started, ended = span(phases)
    header = Clock(tz, None)
    start, end = _text(root, "Start"), _text(root, "End")
    started = header.at(start, "Start") if start else started
    ended = header.at(end, "End") if end else ended
    check_order(started, ended, "cycle")
    leak = _text(root, "LeakTest")
    alarm = root.find("Alarm")
    return WasherCycle(
        washer=root.get("machine", "").strip(),
        program=program,
        cycle_number=cycle,
        started_at=started,
        ended_at=ended,
        operator=_text(root, "Operator") or "",
        scope=_text(root, "Scope") or "",
        phases=phases,
        leak_test=verdict(leak, "LeakTest") if leak else None,
        channels=tuple(
            Channel(c.get("name", ""), verdict(c.get("result", ""), "Channel"))
            for c in root.iterfind("Channels/Channel")
        ),
        error_code=error_code(alarm.get("code") if alarm is not None else None),
        result=verdict(result, "Result"),
    )


def _text(root: ET.Element, tag: str) -> str | None:
    element = root.find(tag)
    return None if element is None else (element.text or "").strip()


def _phase(element: ET.Element, clock: Clock) -> Phase:
    name = element.get("name", "").strip()
    start, end = element.get("start"), element.get("end")
    if not start or not end:
        raise ReceiptError("truncated", f"phase {name!r} has no start or end")
    started, ended = clock.at(start, name), clock.at(end, name)
    check_order(started, ended, name)
    agent = element.get("disinfectant", "").strip()
    return Phase(
        name=name,
        kind=phase_kind(name),
        started_at=started,
        ended_at=ended,
        temperature_c=number(element.get("temperature"), "temperature"),
        disinfectant=disinfectant(agent) if agent else None,
        concentration_pct=number(element.get("concentration"), "concentration"),
    )
