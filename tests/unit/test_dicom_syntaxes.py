"""The acceptor's choice of transfer syntax: the sender's order unless a preference says else."""

from __future__ import annotations

import pytest
from pydicom import uid
from pynetdicom import build_context

from drivers.dicom.syntaxes import TRANSFER_SYNTAXES, SyntaxPolicy, syntax_uid

CT = "1.2.840.10008.5.1.4.1.1.2"
OURS = [str(s) for s in TRANSFER_SYNTAXES]


def test_the_senders_first_supported_syntax_is_chosen() -> None:
    policy = SyntaxPolicy()
    proposed = ["1.2.3.4.99", uid.JPEG2000, uid.ExplicitVRLittleEndian]  # 1.2.3.4.99: unknown
    assert policy.choose(proposed, OURS, "CT01") == uid.JPEG2000
    assert policy.choose(["1.2.3.4.99"], OURS, "CT01") is None


def test_a_preference_applies_to_its_calling_ae_then_to_any_other() -> None:
    policy = SyntaxPolicy({"CT01": ["ImplicitVRLittleEndian"], "*": [uid.ExplicitVRLittleEndian]})
    proposed = [uid.JPEGBaseline8Bit, uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
    assert policy.choose(proposed, OURS, "CT01") == uid.ImplicitVRLittleEndian
    assert policy.choose(proposed, OURS, "MR01") == uid.ExplicitVRLittleEndian
    # A preference that names nothing proposed leaves the sender's order.
    assert policy.choose([uid.RLELossless, uid.JPEG2000], OURS, "CT01") == uid.RLELossless


def test_negotiation_keeps_pynetdicoms_verdict_and_sets_the_chosen_syntax() -> None:
    requested = [
        build_context(CT, [uid.JPEGBaseline8Bit, uid.ExplicitVRLittleEndian]),
        build_context("1.2.3.4.5", [uid.ExplicitVRLittleEndian]),  # an unknown SOP class
    ]
    for number, context in enumerate(requested):
        context.context_id = 1 + 2 * number
    supported = [build_context(CT, list[str | uid.UID](TRANSFER_SYNTAXES))]
    results, _ = SyntaxPolicy().negotiate(requested, supported, None, "CT01")
    by_id = {cx.context_id: cx for cx in results}
    assert by_id[1].result == 0x00 and by_id[1].transfer_syntax == [uid.JPEGBaseline8Bit]
    assert by_id[3].result != 0x00


def test_unknown_syntaxes_are_refused_in_the_config() -> None:
    assert syntax_uid("1.2.840.10008.1.2.4.50") == uid.JPEGBaseline8Bit
    with pytest.raises(ValueError, match="not a supported transfer syntax"):
        syntax_uid("JPEG-XL")
