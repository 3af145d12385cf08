"""Hybrid handshakes: RFC 9370 additional key exchanges run in IKE_INTERMEDIATE (RFC 9242)."""

from __future__ import annotations

import pytest

from pqike.constants import KeyExchangeMethod as KE
from pqike.constants import NotifyType, TransformType
from pqike.handshake import drive_pair, run_handshake
from pqike.ike.events import IkeSaEstablished, IkeSaFailed, KeyExchangeCompleted
from pqike.ike.protection import protect, unprotect
from pqike.wire.codec import decode_message, decode_payloads, encode_message
from pqike.wire.payloads import KePayload, NotifyPayload, Proposal, SaPayload

X25519_MLKEM768 = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
HYBRID = {
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768": [(0, KE.CURVE25519), (1, KE.ML_KEM_768)],
    "aes256gcm16-prfsha512-x25519-ke1_mlkem1024": [(0, KE.CURVE25519), (1, KE.ML_KEM_1024)],
    "aes256gcm16-prfsha384-ecp256-ke1_mlkem768-ke2_mlkem1024": [
        (0, KE.ECP256),
        (1, KE.ML_KEM_768),
        (2, KE.ML_KEM_1024),
    ],
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke3_mlkem1024": [
        (0, KE.CURVE25519),
        (1, KE.ML_KEM_768),
        (3, KE.ML_KEM_1024),
    ],
}


def rounds(events):
    return [(e.round, e.method) for e in events if isinstance(e, KeyExchangeCompleted)]


def established(events):
    return next(e for e in events if isinstance(e, IkeSaEstablished))


@pytest.mark.parametrize(("proposal", "expected"), HYBRID.items())
def test_one_intermediate_exchange_per_round_in_ascending_order(proposal, expected):
    result = run_handshake(proposal)
    assert result.established, result.failures
    assert rounds(result.initiator_events) == expected
    assert rounds(result.responder_events) == expected
    requests = [
        (m.exchange, m.message_id)
        for m in result.trace.messages
        if m.sender == "initiator" and not m.retransmission
    ]
    n = len(expected) - 1
    assert requests == [("IKE_SA_INIT", 0)] + [("IKE_INTERMEDIATE", i) for i in range(1, n + 1)] + [
        ("IKE_AUTH", n + 1)
    ]
    ini, res = established(result.initiator_events), established(result.responder_events)
    assert ini.keys == res.keys and ini.intermediate_exchanges == n
    assert result.child_keys == next(
        e.keys for e in result.responder_events if type(e).__name__ == "ChildSaEstablished"
    )


def test_each_round_changes_every_key():
    """SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr): the final keys differ from round 0's."""
    hybrid = run_handshake("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    keys = established(hybrid.initiator_events).keys
    from pqike.crypto.keys import derive_ike_keys, skeyseed, skeyseed_additional
    from pqike.crypto.prf import get_prf

    ini = established(hybrid.initiator_events)
    prf = get_prf(6)
    secrets = [e.shared_secret for e in hybrid.key_exchanges]
    k0 = derive_ike_keys(
        prf,
        skeyseed(prf, ini.nonce_i, ini.nonce_r, secrets[0]),
        ini.nonce_i,
        ini.nonce_r,
        ini.spi_i,
        ini.spi_r,
        encr_key_size=36,
        integ_key_size=0,
    )
    seed1 = skeyseed_additional(prf, k0.sk_d, secrets[1], ini.nonce_i, ini.nonce_r)
    k1 = derive_ike_keys(
        prf,
        seed1,
        ini.nonce_i,
        ini.nonce_r,
        ini.spi_i,
        ini.spi_r,
        encr_key_size=36,
        integ_key_size=0,
    )
    assert keys == k1
    assert k0.sk_d != k1.sk_d and k0.sk_pi != k1.sk_pi


@pytest.mark.parametrize(
    ("responder", "addke"),
    [
        ("aes256gcm16-prfsha384-x25519", []),  # accepts only NONE (no ADDKE1)
        ("aes256gcm16-prfsha384-x25519-ke1_none", []),  # says NONE explicitly
        ("aes256gcm16-prfsha384-x25519-ke1_mlkem768", [(1, KE.ML_KEM_768)]),  # requires ML-KEM
    ],
)
def test_optional_round_follows_the_responder(responder, addke):
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none", responder_proposal=responder
    )
    assert result.established, result.failures
    assert rounds(result.initiator_events) == [(0, KE.CURVE25519), *addke]
    kinds = {m.exchange for m in result.trace.messages}
    assert ("IKE_INTERMEDIATE" in kinds) == bool(addke)


def test_required_round_against_a_classical_responder_is_no_proposal_chosen():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        responder_proposal="aes256gcm16-prfsha384-x25519",
    )
    assert not result.established
    assert {f.notify for f in result.failures} == {NotifyType.NO_PROPOSAL_CHOSEN}


# --- an attacker with the keys -----------------------------------------------------------


def reprotect(data, sa, from_initiator, mutate):
    """Decrypt a protected datagram with the SA's current keys, mutate, protect again."""
    msg = decode_message(data)
    c = sa.gen.crypto
    k = c.keys
    sk_e, sk_a = (k.sk_ei, k.sk_ai) if from_initiator else (k.sk_er, k.sk_ar)
    plain = unprotect(msg, c.cipher, sk_e, sk_a)
    inner = list(decode_payloads(plain.first_inner, plain.plaintext))
    inner = mutate(inner)
    return protect(msg.header, inner, c.cipher, sk_e, sk_a).messages[0]


def tamper(pair, exchange_index, from_initiator, mutate):
    """Drive ``pair`` (unfragmented: ``fragment_size=9000``), mutating one IKE_INTERMEDIATE."""
    ini, res = pair
    seen = {"n": 0}

    def deliver(sender, data, index):
        msg = decode_message(data)
        if msg.header.exchange_type == 43 and (sender == "initiator") == from_initiator:
            seen["n"] += 1
            if seen["n"] == exchange_index:
                return [reprotect(data, res if from_initiator else ini, from_initiator, mutate)]
        return [data]

    return drive_pair(ini, res, deliver=deliver)


def add_notify(inner):
    return [*inner, NotifyPayload(40000, b"attacker was here")]


@pytest.mark.parametrize("from_initiator", [True, False])
@pytest.mark.parametrize("which", [1, 2])
def test_changing_any_intermediate_message_makes_auth_fail_on_both_sides(
    from_initiator, which, sa_pair
):
    proposal = "aes256gcm16-prfsha384-ecp256-ke1_mlkem768-ke2_mlkem1024"
    result = tamper(sa_pair(proposal, fragment_size=9000), which, from_initiator, add_notify)
    assert not result.established
    for events in (result.initiator_events, result.responder_events):
        assert [e.notify for e in events if isinstance(e, IkeSaFailed)] == [
            NotifyType.AUTHENTICATION_FAILED
        ]


def test_bad_encapsulation_key_is_invalid_syntax_in_that_round(sa_pair):
    def break_ek(inner):
        ke = inner[0]
        bad = bytes([0xFF, 0xFF]) + ke.data[2:]  # a 12-bit coefficient of 4095 >= q
        return [KePayload(ke.method, bad)]

    result = tamper(sa_pair(X25519_MLKEM768, fragment_size=9000), 1, True, break_ek)
    assert not result.established
    for events in (result.initiator_events, result.responder_events):
        failed = [e for e in events if isinstance(e, IkeSaFailed)]
        assert [(f.notify, f.round) for f in failed] == [(NotifyType.INVALID_SYNTAX, 1)]
    assert not any(m.exchange == "IKE_AUTH" for m in result.trace.messages)


def test_short_ciphertext_ends_the_initiator_without_ike_auth(sa_pair):
    def cut(inner):
        ke = inner[0]
        return [KePayload(ke.method, ke.data[:-1])]

    result = tamper(sa_pair(X25519_MLKEM768, fragment_size=9000), 1, False, cut)
    failed = [e for e in result.initiator_events if isinstance(e, IkeSaFailed)]
    assert [(f.notify, f.round) for f in failed] == [(NotifyType.INVALID_SYNTAX, 1)]
    assert "ciphertext" in failed[0].reason or "length" in failed[0].reason
    assert not any(m.exchange == "IKE_AUTH" for m in result.trace.messages)
    # The responder cannot be told (its keys already moved on): its half-open timer ends it.
    (res_failed,) = [e for e in result.responder_events if isinstance(e, IkeSaFailed)]
    assert res_failed.round == 1 and "no IKE_AUTH within 30 s" in res_failed.reason


def test_a_responder_that_drops_a_required_round_is_refused(sa_pair):
    ini, res = sa_pair(X25519_MLKEM768)

    def downgrade(sender, data, index):
        msg = decode_message(data)
        if sender == "responder" and msg.header.exchange_type == 34:
            payloads = []
            for p in msg.payloads:
                if isinstance(p, SaPayload):
                    prop = p.proposals[0]
                    kept = tuple(t for t in prop.transforms if t.type != TransformType.ADDKE1)
                    p = SaPayload((Proposal(prop.number, prop.protocol_id, kept, prop.spi),))
                payloads.append(p)
            return [encode_message(msg.header, payloads)]
        return [data]

    result = drive_pair(ini, res, deliver=downgrade)
    assert not result.established
    failed = [e for e in result.initiator_events if isinstance(e, IkeSaFailed)]
    assert [f.notify for f in failed] == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert not any(
        m.exchange in ("IKE_INTERMEDIATE", "IKE_AUTH") and m.sender == "initiator"
        for m in result.trace.messages
    )
