"""pqike's key schedule, IntAuth and AUTH reproduce strongSwan 6.0.1 byte for byte.

The reference is one real strongSwan <-> strongSwan hybrid handshake
(x25519 + ML-KEM-768, tests/data/strongswan/): its datagrams and the level-4 charon log
of the initiator, which dumps every shared secret, SKEYSEED, SK_* key, IntAuth and AUTH.
From the secrets and the captured bytes alone, our crypto and wire layers must arrive at
the very values strongSwan logged (RFC 7296 2.14/2.15, RFC 9370 2.2.2, RFC 9242 3.3.2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.constants import PrfTransform
from pqike.crypto import auth
from pqike.crypto.keys import derive_ike_keys, skeyseed, skeyseed_additional
from pqike.crypto.prf import get_prf
from pqike.crypto.protect import get_cipher
from pqike.ike.protection import Reassembler, ReassemblyLimits, unprotect
from pqike.interop.lab import log_dumps
from pqike.wire.codec import decode_message, decode_payloads
from pqike.wire.payloads import AuthPayload, IdiPayload, IdrPayload

DATA = Path(__file__).parent.parent / "data" / "strongswan"
PSK = b"pqike-interop-lab-psk"


def datagram(prefix: str) -> bytes:
    raw = bytes.fromhex(next(DATA.glob(prefix + "-*.hex")).read_text().strip())
    return raw[4:] if raw[:4] == b"\x00" * 4 else raw  # drop the non-ESP marker


@pytest.fixture(scope="module")
def ref():
    log = (DATA / "left.log").read_text()
    dumps = {
        label: log_dumps(log, label)
        for label in (
            "key exchange secret",
            "nonces",
            "SKEYSEED",
            "Sk_d secret",
            "Sk_ai secret",
            "Sk_ar secret",
            "Sk_ei secret",
            "Sk_er secret",
            "Sk_pi secret",
            "Sk_pr secret",
            "IntAuth_N = prf(Sk_px, data)",
            "AUTH = prf(prf(secret, keypad), octets)",
        )
    }
    return dumps


PRF = get_prf(PrfTransform.HMAC_SHA2_384)
CIPHER = get_cipher(20, 256, 0)


def keys_after(ref, n):
    names = ("Sk_d", "Sk_ai", "Sk_ar", "Sk_ei", "Sk_er", "Sk_pi", "Sk_pr")
    return tuple(ref[f"{name} secret"][n] if ref[f"{name} secret"] else b"" for name in names)


def nonces(ref):
    both = ref["nonces"][0]
    return both[:32], both[32:]


def spis():
    hdr = decode_message(datagram("02")).header
    return hdr.spi_i, hdr.spi_r


def our_keys(seed, ref):
    ni, nr = nonces(ref)
    spi_i, spi_r = spis()
    k = derive_ike_keys(PRF, seed, ni, nr, spi_i, spi_r, encr_key_size=36, integ_key_size=0)
    return (k.sk_d, k.sk_ai, k.sk_ar, k.sk_ei, k.sk_er, k.sk_pi, k.sk_pr), k


def test_ike_sa_init_keys_match(ref):
    ni, nr = nonces(ref)
    seed = skeyseed(PRF, ni, nr, ref["key exchange secret"][0])
    assert seed == ref["SKEYSEED"][0]
    ours, _ = our_keys(seed, ref)
    assert ours[0] == keys_after(ref, 0)[0]
    assert ours[3:] == keys_after(ref, 0)[3:]


def test_rfc9370_update_after_the_ml_kem_round_matches(ref):
    ni, nr = nonces(ref)
    _, k0 = our_keys(skeyseed(PRF, ni, nr, ref["key exchange secret"][0]), ref)
    seed1 = skeyseed_additional(PRF, k0.sk_d, ref["key exchange secret"][1], ni, nr)
    assert seed1 == ref["SKEYSEED"][1]
    ours, _ = our_keys(seed1, ref)
    assert ours[0] == keys_after(ref, 1)[0] and ours[3:] == keys_after(ref, 1)[3:]


def _intermediate(ref):
    _, k0 = our_keys(skeyseed(PRF, *nonces(ref), ref["key exchange secret"][0]), ref)
    r = Reassembler(ReassemblyLimits())
    assert r.add(decode_message(datagram("03")), CIPHER, k0.sk_ei, b"", now=0) is None
    request = r.add(decode_message(datagram("04")), CIPHER, k0.sk_ei, b"", now=0)
    response = unprotect(decode_message(datagram("05")), CIPHER, k0.sk_er, b"")
    return k0, request, response


def test_int_auth_over_the_fragmented_request_and_the_response_matches(ref):
    k0, request, response = _intermediate(ref)
    assert request.fragments == (1248, 66)
    a_p_i = auth.int_auth_octets(
        request.header_bytes, request.unprotected, request.first_inner, request.plaintext
    )
    a_p_r = auth.int_auth_octets(
        response.header_bytes, response.unprotected, response.first_inner, response.plaintext
    )
    # RFC 9242 3.3.2: keyed with the SK_p in force before this exchange's update.
    int_auth_i = auth.int_auth(PRF, k0.sk_pi, b"", a_p_i)
    int_auth_r = auth.int_auth(PRF, k0.sk_pr, b"", a_p_r)
    assert [int_auth_i, int_auth_r] == ref["IntAuth_N = prf(Sk_px, data)"][:2]


def test_auth_payloads_in_ike_auth_match(ref):
    k0, request, response = _intermediate(ref)
    int_auth_i = auth.int_auth(
        PRF,
        k0.sk_pi,
        b"",
        auth.int_auth_octets(request.header_bytes, b"", request.first_inner, request.plaintext),
    )
    int_auth_r = auth.int_auth(
        PRF,
        k0.sk_pr,
        b"",
        auth.int_auth_octets(response.header_bytes, b"", response.first_inner, response.plaintext),
    )
    final = keys_after(ref, 1)
    sk_ei, sk_er, sk_pi, sk_pr = final[3], final[4], final[5], final[6]
    ni, nr = nonces(ref)
    auth_req = decode_message(datagram("06"))
    auth_resp = decode_message(datagram("07"))
    mid = auth_req.header.message_id.to_bytes(4, "big")
    tail = int_auth_i + int_auth_r + mid
    req = unprotect(auth_req, CIPHER, sk_ei, b"")
    req_payloads = decode_payloads(req.first_inner, req.plaintext)
    idi = next(p for p in req_payloads if isinstance(p, IdiPayload))
    octets_i = auth.signed_octets(datagram("01"), nr, PRF, sk_pi, idi.body, tail)
    auth_i = auth.psk_auth(PRF, PSK, octets_i)
    assert auth_i == next(p for p in req_payloads if isinstance(p, AuthPayload)).data
    assert auth_i == ref["AUTH = prf(prf(secret, keypad), octets)"][0]
    resp = unprotect(auth_resp, CIPHER, sk_er, b"")
    resp_payloads = decode_payloads(resp.first_inner, resp.plaintext)
    idr = next(p for p in resp_payloads if isinstance(p, IdrPayload))
    octets_r = auth.signed_octets(datagram("02"), ni, PRF, sk_pr, idr.body, tail)
    assert (
        auth.psk_auth(PRF, PSK, octets_r)
        == next(p for p in resp_payloads if isinstance(p, AuthPayload)).data
    )
