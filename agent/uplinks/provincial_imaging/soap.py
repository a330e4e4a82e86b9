"""SOAP 1.1 for seed 003 §3.4: both services take one string (an XML document) and return one
(`<response><code/><desc/></response>`). The client side is zeep (the WSDL built from config, or
the platform's own saved copy: CI and hospitals may have no route to fetch it); the served side
(SynStatusInfo on the platform listener) reads the envelope with the standard library."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CONTENT_TYPE = "text/xml; charset=utf-8"
CODE = "code"  # the answer's element (<response><code>)
APPLY = ("SynApplyInfo", "req")  # (operation, its parameter) as §3.4.1.1 names them
STATUS = ("SynStatusInfo", "inputString")  # §3.4.2.1


class SoapError(ValueError):
    """A SOAP message that is not what the service expects (unreadable, a fault, no string)."""

    def __init__(self, reason: str, *, fault: bool = False) -> None:
        super().__init__(reason)
        self.fault = fault


def wsdl(operation: str, parameter: str, namespace: str, location: str) -> str:
    """A document/literal WSDL of one operation taking and returning one string."""
    op, arg, ns, at = (
        escape(operation),
        escape(parameter),
        quoteattr(namespace),
        quoteattr(location),
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:tns={ns} targetNamespace={ns} name="{op}Service">
  <wsdl:types>
    <xsd:schema targetNamespace={ns} elementFormDefault="unqualified">
      <xsd:element name="{op}"><xsd:complexType><xsd:sequence>
        <xsd:element name="{arg}" type="xsd:string" minOccurs="0" nillable="true"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="{op}Response"><xsd:complexType><xsd:sequence>
        <xsd:element name="return" type="xsd:string" minOccurs="0" nillable="true"/>
      </xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="{op}Request"><wsdl:part name="parameters" element="tns:{op}"/></wsdl:message>
  <wsdl:message name="{op}Response">
    <wsdl:part name="parameters" element="tns:{op}Response"/>
  </wsdl:message>
  <wsdl:portType name="{op}PortType">
    <wsdl:operation name="{op}">
      <wsdl:input message="tns:{op}Request"/><wsdl:output message="tns:{op}Response"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="{op}Binding" type="tns:{op}PortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="{op}">
      <soap:operation soapAction=""/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="{op}Service">
    <wsdl:port name="{op}Port" binding="tns:{op}Binding"><soap:address location={at}/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


@dataclass(frozen=True, slots=True)
class _Reply:
    """What zeep reads of an HTTP answer (it expects a `requests` response)."""

    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"


class SoapClient:
    """One operation of a WSDL: the request envelope for a string, the string of the answer."""

    def __init__(self, operation: str, wsdl_text: str | None, wsdl_file: Path | None) -> None:
        import zeep  # here, not at import: zeep, lxml and requests cost every start 0.3 s

        settings = zeep.Settings(
            strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        source: Any = (
            str(wsdl_file)
            if wsdl_file is not None
            else io.BytesIO((wsdl_text or "").encode("utf-8"))
        )
        self.operation = operation
        self._client = zeep.Client(source, settings=settings)  # type: ignore[no-untyped-call]
        self._binding = self._client.service._binding
        self._op = self._binding.get(operation)

    def request(self, text: str) -> tuple[bytes, dict[str, str]]:
        """The envelope carrying `text` as the operation's one argument, and its HTTP headers."""
        from zeep.wsdl.utils import etree_to_string

        envelope = self._client.create_message(  # type: ignore[no-untyped-call]
            self._client.service, self.operation, text
        )
        body: bytes = etree_to_string(envelope)  # type: ignore[no-untyped-call]
        action = self._op.soapaction or ""
        return body, {"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{action}"'}

    def answer(self, status: int, content: bytes, content_type: str) -> str:
        """The string the operation returned; SoapError when the answer is no such envelope."""
        from zeep.exceptions import Error as ZeepError
        from zeep.exceptions import Fault

        reply = _Reply(status, content, {"Content-Type": content_type or "text/xml"})
        try:
            result = self._binding.process_reply(self._client, self._op, reply)
        except Fault as err:
            raise SoapError(f"SOAP fault: {err.message}", fault=True) from err
        except (ZeepError, ValueError, AttributeError, TypeError) as err:
            raise SoapError(f"not a {self.operation} answer: {type(err).__name__}") from err
        if result is not None and not isinstance(result, str):
            result = getattr(result, "return", None) or getattr(result, "_value_1", None)
        if not isinstance(result, str):
            raise SoapError(f"{self.operation} answer carries no string")
        return result


def argument(body: bytes, operation: str) -> str:
    """The string argument of a one-argument SOAP request to `operation`; SoapError otherwise."""
    root = parse(body)
    envelope_body = root.find(f"{{{SOAP_ENV}}}Body")
    call = envelope_body[0] if envelope_body is not None and len(envelope_body) else None
    if call is None or _local(call.tag) != operation:
        raise SoapError(f"not a {operation} request")
    if len(call) == 0:
        raise SoapError(f"{operation}: no argument")
    return call[0].text or ""


def response(operation: str, text: str, namespace: str) -> bytes:
    """The SOAP answer of `operation` returning `text`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
        f"<ns:{operation}Response xmlns:ns={quoteattr(namespace)}>"
        f"<return>{escape(text)}</return></ns:{operation}Response>"
        "</soap:Body></soap:Envelope>"
    ).encode()


def fault(reason: str) -> bytes:
    """A SOAP 1.1 Client fault (a request we cannot read)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:Client</faultcode><faultstring>{escape(reason)}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


def result_xml(code: str, desc: str) -> str:
    """The `<response>` document both services answer with."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<response><code>{escape(code)}</code><desc>{escape(desc)}</desc></response>"
    )


def read_result(text: str) -> tuple[str, str]:
    """(code, desc) of a `<response>` document; SoapError when it is none."""
    root = parse(text.encode("utf-8") if isinstance(text, str) else text)
    found = root.findtext(CODE)
    if _local(root.tag) != "response" or found is None:
        raise SoapError("the returned string is not <response><code>…")
    return found.strip(), (root.findtext("desc") or "").strip()


def parse(body: bytes) -> ET.Element:
    """An XML document without a DTD; SoapError otherwise."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise SoapError("a DTD is not accepted")
    try:
        return ET.fromstring(body)  # noqa: S314 - no DTD (above), so no entity expansion
    except ET.ParseError as err:
        raise SoapError(f"not XML: {err}") from err


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
