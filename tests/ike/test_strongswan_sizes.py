"""pqike's messages differ from strongSwan's only by the optional payloads strongSwan adds.

Same proposal, identities and traffic selectors as the captured strongSwan <-> strongSwan
run (tests/data/strongswan/README.md); for every message, pqike's IKE length plus the
encoded length of each payload strongSwan sent and pqike did not equals strongSwan's
length. Those payloads are named here, so the comparison says which notifies cost what.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.constants import NotifyType, PayloadType
from pqike.crypto.protect import get_cipher
from pqike.handshake import drive_pair, make_config
from pqike.ike.protection import Reassembler, ReassemblyLimits, unprotect
from pqike.ike.sa import IkeSa
from pqike.interop.lab import log_dumps
from pqike.wire.codec import decode_message, decode_payloads, encode_payloads
from pqike.wire.payloads import NotifyPayload, TrafficSelector

DATA = Path(__file__).parent.parent / "data" / "strongswan"
PROPOSAL = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def strongswan_messages():
    """(exchange, is_response, IKE length, payloads) of each captured message."""
    log = (DATA / "left.log").read_text()
    ei, er = log_dumps(log, "Sk_ei secret"), log_dumps(log, "Sk_er secret")
    cipher = get_cipher(20, 256, 0)
    raw = {}
    for f in sorted(DATA.glob("0*.hex")):
        data = bytes.fromhex(f.read_text().strip())
        raw[f.name[:2]] = data[4:] if data[:4] == b"\x00" * 4 else data
    out = []
    for name in ("01", "02"):
        m = decode_message(raw[name])
        out.append(("IKE_SA_INIT", m.header.is_response, len(m.raw), list(m.payloads)))
    r = Reassembler(ReassemblyLimits())
    r.add(decode_message(raw["03"]), cipher, ei[0], b"", now=0)
    req = r.add(decode_message(raw["04"]), cipher, ei[0], b"", now=0)
    resp = unprotect(decode_message(raw["05"]), cipher, er[0], b"")
    for u in (req, resp):
        out.append(
            (
                "IKE_INTERMEDIATE",
                u.header.is_response,
                u.ike_bytes,
                list(decode_payloads(u.first_inner, u.plaintext)),
            )
        )
    for name, key in (("06", ei[1]), ("07", er[1])):
        u = unprotect(decode_message(raw[name]), cipher, key, b"")
        out.append(
            (
                "IKE_AUTH",
                u.header.is_response,
                u.ike_bytes,
                list(decode_payloads(u.first_inner, u.plaintext)),
            )
        )
    return out


def pqike_messages():
    left, right = (
        (TrafficSelector.from_network("192.0.2.1/32"),),
        (TrafficSelector.from_network("192.0.2.2/32"),),
    )
    ini = IkeSa(
        make_config(
            PROPOSAL,
            local_id="left.pqike.test",
            remote_id="right.pqike.test",
            psk=b"k",
            local_ts=left,
            remote_ts=right,
        ),
        is_initiator=True,
    )
    res = IkeSa(
        make_config(
            PROPOSAL, local_id="right.pqike.test", psk=b"k", local_ts=right, remote_ts=left
        ),
        is_initiator=False,
        local=("192.0.2.2", 500),
        remote=("192.0.2.1", 500),
    )
    result = drive_pair(ini, res)
    assert result.established
    return [(m.exchange, m.is_response, m.ike_bytes) for m in result.trace.messages]


def kind(p):
    if isinstance(p, NotifyPayload):
        try:
            return NotifyType(p.notify_type).name
        except ValueError:
            return f"N({p.notify_type})"
    return PayloadType(p.payload_type).name


EXTRA = {
    ("IKE_SA_INIT", False): {"SIGNATURE_HASH_ALGORITHMS", "REDIRECT_SUPPORTED"},
    ("IKE_SA_INIT", True): {
        "CERTREQ",
        "SIGNATURE_HASH_ALGORITHMS",
        "CHILDLESS_IKEV2_SUPPORTED",
        "MULTIPLE_AUTH_SUPPORTED",
    },
    ("IKE_INTERMEDIATE", False): set(),
    ("IKE_INTERMEDIATE", True): set(),
    ("IKE_AUTH", False): {
        "INITIAL_CONTACT",
        "CERTREQ",
        "ESP_TFC_PADDING_NOT_SUPPORTED",
        "MOBIKE_SUPPORTED",
        "ADDITIONAL_IP6_ADDRESS",
        "MULTIPLE_AUTH_SUPPORTED",
        "EAP_ONLY_AUTHENTICATION",
        "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
    },
    ("IKE_AUTH", True): {
        "ESP_TFC_PADDING_NOT_SUPPORTED",
        "MOBIKE_SUPPORTED",
        "ADDITIONAL_IP6_ADDRESS",
    },
}


@pytest.mark.parametrize("index", range(6))
def test_sizes_differ_only_by_strongswans_extra_payloads(index):
    exchange, is_response, sw_len, sw_payloads = strongswan_messages()[index]
    ours = pqike_messages()[index]
    assert ours[:2] == (exchange, is_response)
    extra = [p for p in sw_payloads if kind(p) in EXTRA[(exchange, is_response)]]
    assert {kind(p) for p in extra} == EXTRA[(exchange, is_response)]
    assert ours[2] + len(encode_payloads(extra)) == sw_len
