"""Each association gets its own copy of the server's contexts, made without a deepcopy."""

from __future__ import annotations

import copy

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import build_context

from drivers.dicom.server import ContextList

CT = "1.2.840.10008.5.1.4.1.1.2"


def test_an_associations_contexts_are_independent_of_the_servers() -> None:
    original = build_context(CT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    original.scp_role = True
    contexts = ContextList([original])
    mine = copy.deepcopy(contexts)  # what pynetdicom does for each accepted association
    assert mine == [original]
    assert mine[0] is not original
    mine[0].transfer_syntax = [JPEGBaseline8Bit]  # the association negotiates, roles too
    mine[0].scp_role = False
    mine[0].context_id = 1
    assert original.transfer_syntax == [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    assert (original.scp_role, original.context_id) == (True, None)
    mine[0]._transfer_syntax.append(ImplicitVRLittleEndian)  # in place, not only reassigned
    assert original.transfer_syntax == [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
