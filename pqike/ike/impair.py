"""Impairments: pqike misbehaving on purpose, to see how a peer reacts.

In the manner of libreswan's test framework, each name switches on one deviation from
RFC 7296 / 9242 / 9370 / 7383 or FIPS 203 at the one place in ``pqike.ike`` where the
behaviour is decided. They are set per IKE SA in ``IkeConfiguration.impairments``
(``--impair NAME`` on ``pqike handshake``, ``initiate``, ``respond`` and in experiment
specs) and apply in whichever role the SA plays when that code path runs; an impairment
that does not fit the role or the negotiated suite simply never fires. With none set,
every check is one test of an empty frozenset.

The bugs they probe are those implementers of RFC 9242 and 9370 hit: what IntAuth covers
when IKE_INTERMEDIATE carries an unencrypted payload (libreswan #2510), IntAuth for an
exchange that never happened (#2834), a round selected NONE that still ran (#2446), the
ADDITIONAL_KEY_EXCHANGE notify on the last IKE_FOLLOWUP_KE (#2926).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigurationError

IMPAIRMENTS: dict[str, str] = {
    "omit-addke-notify": (
        "responder: leave N(ADDITIONAL_KEY_EXCHANGE) out of a CREATE_CHILD_SA or "
        "IKE_FOLLOWUP_KE response that is followed by more rounds (RFC 9370 2.2.4)"
    ),
    "addke-notify-on-last": (
        "responder: put N(ADDITIONAL_KEY_EXCHANGE) in the last IKE_FOLLOWUP_KE response too "
        "(libreswan #2926)"
    ),
    "run-none-round": (
        "initiator: run an IKE_INTERMEDIATE round for an ADDKE transform the responder "
        "selected as NONE or left out (libreswan #2446)"
    ),
    "unencrypted-payload": (
        "put a Vendor ID payload before SK in every IKE_INTERMEDIATE message we send; "
        "IntAuth's A must cover it (RFC 9242 3.3.2, libreswan #2510)"
    ),
    "wrong-int-auth": "flip one bit of the IntAuth our AUTH payload signs (RFC 9242 3.3.2)",
    "auth-without-int-auth": (
        "compute our AUTH without IntAuth after IKE_INTERMEDIATE exchanges (RFC 9242 3.3.2)"
    ),
    "phantom-int-auth": (
        "append an IntAuth of zeros to our AUTH octets when no IKE_INTERMEDIATE happened "
        "(libreswan #2834)"
    ),
    "bad-mlkem-key": (
        "initiator: send an ML-KEM encapsulation key whose first coefficient is not below q, "
        "failing FIPS 203 7.2's modulus check"
    ),
    "short-ciphertext": (
        "responder: send the KEM ciphertext of an additional key exchange one byte short"
    ),
    "wrong-ke-method": (
        "name another key exchange method in the KE payload of an additional key exchange "
        "than the one negotiated for that round"
    ),
    "duplicate-fragment": "send fragment 1 of every fragmented message twice (RFC 7383 2.6)",
    "overlapping-fragments": (
        "let the plaintext of each fragment overlap the previous one by 16 bytes (RFC 7383 2.5)"
    ),
    "out-of-range-fragment": ("send an extra fragment numbered Total Fragments + 1 (RFC 7383 2.6)"),
    "changed-total": (
        "send the last fragment of a message with Total Fragments one higher (RFC 7383 2.6.1)"
    ),
    "strip-addke": (
        "responder: drop the ADDKE transforms from the selected IKE proposal and run no "
        "additional key exchange (a downgrade the initiator must refuse, RFC 9370 2.2.1)"
    ),
    "retransmit-changed-nonce": (
        "initiator: follow the IKE_SA_INIT request with a 'retransmission' of it that "
        "carries another nonce (RFC 7296 2.1: a retransmission is the same message)"
    ),
}
"""Every impairment: its name and what it does, in one line."""


def check_impairments(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a frozenset, or ``ConfigurationError`` naming the unknown one."""
    out = frozenset(n.strip() for n in names if n.strip())
    for n in sorted(out):
        if n not in IMPAIRMENTS:
            raise ConfigurationError(
                f"unknown impairment {n!r}; `pqike impairments` lists them", field="impairments"
            )
    return out


__all__ = ["IMPAIRMENTS", "check_impairments"]
