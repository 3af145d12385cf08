"""RFC 9867: the PPK agreed in IKE_INTERMEDIATE (PPK_IDENTITY_KEY), then mixed into
every IKE SA key.

    HDR, SAi1, KEi, Ni, N(INT_SUP), N(USE_PPK_INT), [N(USE_PPK)]  -->
                   <--  HDR, SAr1, KEr, Nr, N(INT_SUP), N(USE_PPK_INT)
    HDR, SK{[KEi(n)], N(PPK_IDENTITY_KEY)+}  -->
                   <--  HDR, SK{[KEr(n)], [N(PPK_IDENTITY)]}

The rules (RFC 9867 3 describes the protocol for the initial IKE SA, 4 the two
notifies; libreswan's implementation, the first one, was read to settle the details):

- 3: USE_PPK_INT (an empty status Notify) goes in IKE_SA_INIT next to
  INTERMEDIATE_EXCHANGE_SUPPORTED, which RFC 9867 needs. An initiator that also does
  RFC 8784 may send USE_PPK as well; a responder answers with one of the two:
  USE_PPK_INT when it supports RFC 9867 (and IKE_INTERMEDIATE), else USE_PPK, else
  neither. pqike's ``rfc9867`` initiator sends both, so an RFC 8784-only responder
  (strongSwan) still uses the PPK at IKE_AUTH.
- 3, 4: the initiator sends one PPK_IDENTITY_KEY per PPK it is willing to use, in its
  order of preference. Its data is the PPK_ID exactly as in RFC 8784's PPK_IDENTITY
  (a PPK ID Type octet, PPK_ID_FIXED here, then the ID) followed by the PPK
  Confirmation: the first 8 octets of ``prf(PPK, Ni | Nr | SPIi | SPIr)`` with the
  negotiated PRF and the IKE_SA_INIT nonces and SPIs (``crypto.keys.ppk_confirmation``).
  The responder takes the first one whose PPK_ID it knows *and* whose confirmation
  matches its copy of that PPK, and returns that PPK_ID in a PPK_IDENTITY Notify.
- 3: with additional key exchanges (RFC 9370) the PPK_IDENTITY_KEY notifies ride in
  the IKE_INTERMEDIATE of the last ADDKE round, and the PPK is mixed after that round's
  key update; without ADDKE rounds one IKE_INTERMEDIATE exchange carries only them
  (libreswan does the same). Both sides know from IKE_SA_INIT which exchange that is.
- 3, RFC 9242 3.3.2: the PPK exchange is an IKE_INTERMEDIATE like any other: both
  messages are protected with the keys in force before it (pre-PPK) and folded into
  IntAuth with that epoch's SK_pi/SK_pr, so IKE_AUTH signs the PPK_IDENTITY_KEY and
  PPK_IDENTITY notifies too.
- 3 (key update): after the exchange both sides compute ``SKEYSEED' = prf+(PPK,
  SK_d)`` and re-derive all seven keys from it (``crypto.keys.ppk_intermediate_keys``);
  IKE_AUTH and all later messages use them, and IKE_AUTH carries no PPK notify.
- 3 (no match): a responder whose PPK is optional answers without PPK_IDENTITY and the
  SA goes on with the keys it had (no NO_PPK_AUTH is needed: AUTH is not PPK-keyed
  here); a responder whose PPK is mandatory answers AUTHENTICATION_FAILED. An initiator
  whose PPK is mandatory gives up on a response without PPK_IDENTITY (the responder's
  half-open SA times out, as with RFC 8784). A wrong PPK (confirmation mismatch) counts
  as no match, and so does a PPK ID Type other than PPK_ID_FIXED (the only one pqike
  and strongSwan use).
- A PPK_IDENTITY_KEY shorter than a type octet, a one-octet ID and the confirmation
  cannot be parsed: INVALID_SYNTAX.
- The CREATE_CHILD_SA part of RFC 9867 (a fresh PPK on rekey) is not
  implemented: an IKE SA rekey or Child SA rekey derives from the (PPK-derived) SK_d as
  RFC 7296 2.17/2.18 say, and stays PPK-protected that way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...constants import NotifyType
from ...crypto.keys import PPK_CONFIRMATION_SIZE, ppk_confirmation
from ...errors import AuthenticationFailed, InvalidSyntax
from ...wire.payloads import NotifyPayload, Payload
from .authentication import PPK_ID_FIXED, peer_ppk_id
from .common import notify

if TYPE_CHECKING:
    from ..sa import IkeSa

MIN_IDENTITY_KEY_SIZE = 2 + PPK_CONFIRMATION_SIZE
"""RFC 9867 4: PPK ID Type, at least one octet of PPK_ID, the 8-octet confirmation."""


def carries_ppk(sa: IkeSa) -> bool:
    """This IKE_INTERMEDIATE exchange is the one for the PPK (RFC 9867 3): the PPK is
    still to agree and this is the last ADDKE round, or none is left."""
    hs = sa.hs
    rounds = hs.rounds
    return hs.ppk_int_pending and rounds.done >= len(rounds.pending) - 1


def _confirmation(sa: IkeSa, ppk: bytes) -> bytes:
    crypto = sa.gen.crypto
    assert crypto is not None
    hs = sa.hs
    return ppk_confirmation(crypto.prf, ppk, hs.nonce_i, hs.nonce_r, sa.gen.spi_i, sa.gen.spi_r)


def identity_key_notifies(sa: IkeSa) -> list[Payload]:
    """The initiator's PPK_IDENTITY_KEY notifies, one per PPK, preferred first."""
    return [
        NotifyPayload(
            NotifyType.PPK_IDENTITY_KEY,
            bytes((PPK_ID_FIXED,)) + ppk_id + _confirmation(sa, ppk),
        )
        for ppk_id, ppk in sa.config.all_ppks
    ]


def parse_identity_key(data: bytes) -> tuple[int, bytes, bytes]:
    """``(PPK ID Type, PPK_ID, confirmation)`` of a PPK_IDENTITY_KEY (RFC 9867 4)."""
    if len(data) < MIN_IDENTITY_KEY_SIZE:
        raise InvalidSyntax(
            f"PPK_IDENTITY_KEY of {len(data)} bytes: a PPK ID Type, a PPK_ID and an "
            f"{PPK_CONFIRMATION_SIZE}-byte PPK Confirmation need at least "
            f"{MIN_IDENTITY_KEY_SIZE}"
        )
    return data[0], data[1:-PPK_CONFIRMATION_SIZE], data[-PPK_CONFIRMATION_SIZE:]


def choose(sa: IkeSa, payloads: Iterable[Payload]) -> tuple[bytes, bytes] | None:
    """The responder: the first offered ``(ppk_id, ppk)`` we hold with a matching
    confirmation, or ``None`` (optional PPK: go on without). Every notify is parsed
    first, so a malformed one is INVALID_SYNTAX wherever it stands; a mandatory PPK
    without a match is AUTHENTICATION_FAILED (RFC 9867 3)."""
    offered = [
        parse_identity_key(p.data)
        for p in payloads
        if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.PPK_IDENTITY_KEY
    ]
    ours = dict(sa.config.all_ppks)
    for id_type, ppk_id, confirmation in offered:
        ppk = ours.get(ppk_id) if id_type == PPK_ID_FIXED else None
        if ppk is not None and confirmation == _confirmation(sa, ppk):
            return ppk_id, ppk
    if sa.config.ppk_required:
        names = ", ".join(repr(i) for _, i, _ in offered) or "none"
        raise AuthenticationFailed(
            f"a PPK is required and no offered PPK_IDENTITY_KEY matched ours (offered: {names})"
        )
    return None


def accepted(sa: IkeSa, payloads: Iterable[Payload]) -> tuple[bytes, bytes] | None:
    """The initiator: the ``(ppk_id, ppk)`` the responder's PPK_IDENTITY names, or
    ``None`` when it names none (it had no match). A mandatory PPK without one is
    AUTHENTICATION_FAILED; a PPK_ID we did not offer is INVALID_SYNTAX."""
    answer = notify(payloads, NotifyType.PPK_IDENTITY)
    if answer is None:
        if sa.config.ppk_required:
            raise AuthenticationFailed(
                "a PPK is required but the responder chose none of ours (no PPK_IDENTITY)"
            )
        return None
    chosen = peer_ppk_id(answer)
    ppk = dict(sa.config.all_ppks).get(chosen) if chosen is not None else None
    if chosen is None or ppk is None:
        raise InvalidSyntax(f"PPK_IDENTITY names a PPK we did not offer: {answer.data!r}")
    return chosen, ppk


def identity(ppk_id: bytes) -> NotifyPayload:
    """The responder's answer: PPK_IDENTITY naming the PPK it chose (RFC 9867 3)."""
    return NotifyPayload(NotifyType.PPK_IDENTITY, bytes((PPK_ID_FIXED,)) + ppk_id)
