"""Transfer syntaxes as acceptor: which we take, and which one of a proposal we accept.

pynetdicom accepts the first syntax of *its own* list that the requestor proposed, so a modality
proposing JPEG, then Explicit VR Little Endian, would get the uncompressed one. Here each accepted
context gets, among the proposed syntaxes we support, the first of the calling AE's configured
preference, else the requestor's first (its preference, PS3.8 §9.3.2.2 lists them in order).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom import uid
from pynetdicom import acse
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

UNCOMPRESSED = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian]
# Stored as received (no codec needed to store or send as is); the order only matters to peers
# that propose several syntaxes in one context when no preference is configured.
TRANSFER_SYNTAXES = [
    *UNCOMPRESSED,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.JPEG2000MCLossless,
    uid.JPEG2000MC,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
    *uid.MPEGTransferSyntaxes,  # endoscopy video (Video Endoscopic Image Storage)
]
ANY_AE = "*"  # the preference key for calling AEs without their own


def syntax_uid(value: str) -> str:
    """A supported transfer syntax UID from its UID or pydicom keyword; ValueError otherwise."""
    value = value.strip()
    for syntax in TRANSFER_SYNTAXES:
        if value in (str(syntax), syntax.keyword):
            return str(syntax)
    raise ValueError(f"{value!r} is not a supported transfer syntax (a UID or pydicom keyword)")


class SyntaxPolicy:
    """Chooses one transfer syntax per accepted presentation context."""

    def __init__(self, preferences: Mapping[str, Sequence[str]] | None = None) -> None:
        self.preferences = {
            ae.strip(): [syntax_uid(s) for s in order] for ae, order in (preferences or {}).items()
        }

    def choose(self, proposed: Sequence[str], supported: Sequence[str], calling: str) -> str | None:
        """The syntax to accept of a proposal, or None if we support none of them."""
        candidates = [str(s) for s in proposed if str(s) in supported]
        order = self.preferences.get(calling.strip(), self.preferences.get(ANY_AE, []))
        for syntax in order:
            if syntax in candidates:
                return syntax
        return candidates[0] if candidates else None

    def negotiate(
        self,
        requested: list[PresentationContext],
        supported: list[PresentationContext],
        roles: Any,
        calling: str,
    ) -> tuple[list[PresentationContext], list[Any]]:
        """pynetdicom's negotiation (which contexts, roles), with our choice of syntax in each."""
        results, role_items = negotiate_as_acceptor(requested, supported, roles)
        ours = {str(cx.abstract_syntax): [str(s) for s in cx.transfer_syntax] for cx in supported}
        proposals = {cx.context_id: cx.transfer_syntax for cx in requested}
        for result in results:
            if result.result != 0x00:
                continue
            syntaxes = ours.get(str(result.abstract_syntax), [])
            chosen = self.choose(proposals.get(result.context_id, []), syntaxes, calling)
            if chosen is not None:
                result.transfer_syntax = [chosen]
        return results, role_items


_POLICIES: weakref.WeakKeyDictionary[Any, SyntaxPolicy] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def use_policy(ae: Any, policy: SyntaxPolicy) -> None:
    """Make the acceptor associations of `ae` negotiate with `policy` (a process-wide hook)."""
    with _lock:
        _POLICIES[ae] = policy
        setattr(acse, "negotiate_as_acceptor", _negotiate)  # noqa: B010 - acse's own import


def _negotiate(
    requested: list[PresentationContext], supported: list[PresentationContext], roles: Any = None
) -> tuple[list[PresentationContext], list[Any]]:
    # pynetdicom negotiates in the association's own thread: that is how the AE is known here.
    assoc = threading.current_thread()
    policy = _POLICIES.get(assoc.ae) if isinstance(assoc, Association) else None
    if policy is None or not isinstance(assoc, Association):
        return negotiate_as_acceptor(requested, supported, roles)
    request = assoc.requestor.primitive
    calling = "" if request is None else str(request.calling_ae_title).strip()
    return policy.negotiate(requested, supported, roles, calling)
