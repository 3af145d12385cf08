"""RFC 9867: the PPK agreed in IKE_INTERMEDIATE (USE_PPK_INT, PPK_IDENTITY_KEY) and mixed
into every IKE SA key, between two in-memory pqike peers: real crypto, every message
through the codec, alone and with ML-KEM additional key exchanges (RFC 9370)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pqike.constants import ExchangeType, NotifyType
from pqike.crypto.keys import ppk_confirmation, ppk_intermediate_keys
from pqike.crypto.prf import get_prf
from pqike.crypto.protect import get_cipher
from pqike.errors import ConfigurationError, ProtocolError
from pqike.handshake import make_config, run_handshake
from pqike.ike.events import AuthComputed, IkeKeysDerived, IkeSaEstablished, IkeSaFailed
from pqike.ike.protection import protect, unprotect
from pqike.lab.dissect import KeySchedule, dissect
from pqike.lab.link import LinkProfile, simulate_handshake
from pqike.secrets import records_of
from pqike.wire.codec import decode_message
from pqike.wire.datagram import ike_message
from pqike.wire.payloads import IkeHeader, NotifyPayload

X25519 = "aes256gcm16-prfsha384-x25519"
MLKEM = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
TWO_ROUNDS = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
CBC = "aes256-sha256-x25519-ke1_mlkem768"  # SK_a too, so all seven keys are non-empty

I_ADDR, R_ADDR = ("192.0.2.1", 500), ("192.0.2.2", 500)  # make_sa_pair's addresses
KEY = bytes(range(32))
PPK = {"ppk": KEY, "ppk_id": b"ppk-1", "ppk_mode": "rfc9867"}


def events(result, side, kind):
    evs = result.initiator_events if side == "initiator" else result.responder_events
    return [e for e in evs if isinstance(e, kind)]


def epochs(result, side="initiator"):
    """The key epochs of the first IKE SA's handshake, in order."""
    return [
        e
        for e in events(result, side, IkeKeysDerived)
        if e.exchange != ExchangeType.CREATE_CHILD_SA
    ]


def final_keys(result, side):
    return events(result, side, IkeSaEstablished)[0].keys


def captured():
    """A ``deliver`` that keeps every datagram, in sending order."""
    seen: list[tuple[str, bytes]] = []

    def deliver(sender, data, index):
        seen.append((sender, data))
        return [data]

    return seen, deliver


def messages(seen):
    return [(sender, decode_message(ike_message(d))) for sender, d in seen]


# --- the exchange and the keys -------------------------------------------------------


@pytest.mark.parametrize("required", [True, False], ids=["mandatory", "optional"])
@pytest.mark.parametrize("proposal", [X25519, MLKEM, TWO_ROUNDS, CBC])
def test_the_ppk_is_mixed_into_every_key_after_the_last_intermediate(proposal, required):
    opts = {**PPK, "ppk_required": required}
    result = run_handshake(proposal, initiator_options=opts, responder_options=opts)
    assert result.established, result.failures
    # Both sides end with the same keys, and they are the PPK epoch's.
    assert final_keys(result, "initiator") == final_keys(result, "responder")
    ini, res = epochs(result, "initiator"), epochs(result, "responder")
    assert [e.keys for e in ini] == [e.keys for e in res]
    rounds = proposal.count("-ke")
    # One epoch per key exchange (IKE_SA_INIT, each ADDKE round), then the PPK's.
    assert [e.ppk_id for e in ini] == [b""] * (1 + rounds) + [b"ppk-1"]
    before, after = ini[-2].keys, ini[-1].keys
    assert final_keys(result, "initiator") == after
    # RFC 9867 3: unlike RFC 8784 every key changes, SK_e and SK_a included.
    for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
        if getattr(before, name):
            assert getattr(before, name) != getattr(after, name), name
    # The PPK rides in the last ADDKE round's exchange, or has one of its own.
    exchanges = [m.exchange for m in result.trace.messages if m.sender == "initiator"]
    assert exchanges.count("IKE_INTERMEDIATE") == max(rounds, 1)
    # Without the PPK the same handshake ends with the pre-PPK keys' shape only.
    plain = run_handshake(proposal)
    assert final_keys(plain, "initiator") != after


def test_skeyseed_prime_is_prf_plus_of_the_ppk_over_sk_d_checked_by_hand():
    # SKEYSEED' = prf+(PPK, SK_d) cut to the PRF's key size: for HMAC-SHA-384 the first
    # block, HMAC(PPK, SK_d | 0x01); then prf+ over the IKE_SA_INIT nonces and SPIs.
    result = run_handshake(MLKEM, initiator_options=PPK, responder_options=PPK)
    assert result.established, result.failures
    *_, before, after = epochs(result)
    seed = hmac.new(KEY, before.keys.sk_d + b"\x01", hashlib.sha384).digest()
    assert after.keys.skeyseed == seed and after.previous_sk_d == before.keys.sk_d
    est = events(result, "initiator", IkeSaEstablished)[0]
    cipher = get_cipher(est.suite.encr, est.suite.key_bits, est.suite.integ)
    again = ppk_intermediate_keys(
        get_prf(6),
        before.keys,
        KEY,
        est.nonce_i,
        est.nonce_r,
        est.spi_i,
        est.spi_r,
        encr_key_size=cipher.key_size,
        integ_key_size=cipher.integ_key_size,
    )
    assert again == after.keys


@pytest.mark.parametrize("proposal", [X25519, MLKEM])
def test_the_ppk_exchange_is_protected_before_the_ppk_and_ike_auth_after(proposal):
    seen, deliver = captured()
    result = run_handshake(
        proposal, initiator_options=PPK, responder_options=PPK, deliver=deliver, fragment_size=3000
    )
    assert result.established, result.failures
    ep = epochs(result)
    # The keys in force when the PPK exchange was sent: IKE_SA_INIT's alone, or before the
    # last ADDKE round's update when the PPK rides in that round's exchange.
    pre = ep[-3].keys if "-ke1" in proposal else ep[-2].keys
    post = ep[-1].keys
    est = events(result, "initiator", IkeSaEstablished)[0]
    cipher = get_cipher(est.suite.encr, est.suite.key_bits, est.suite.integ)

    def opens(sender, message, keys):
        sk_e, sk_a = (keys.sk_ei, keys.sk_ai) if sender == "initiator" else (keys.sk_er, keys.sk_ar)
        try:
            return unprotect(message, cipher, sk_e, sk_a)
        except ProtocolError:
            return None

    msgs = messages(seen)
    last_int = [m for m in msgs if m[1].header.exchange_type == ExchangeType.IKE_INTERMEDIATE][-2:]
    auth = [m for m in msgs if m[1].header.exchange_type == ExchangeType.IKE_AUTH]
    assert len(last_int) == 2 and len(auth) == 2
    for sender, m in last_int:
        assert opens(sender, m, pre) is not None and opens(sender, m, post) is None
    for sender, m in auth:
        assert opens(sender, m, post) is not None and opens(sender, m, pre) is None
    # What the PPK exchange carried, decrypted: PPK_IDENTITY_KEY = PPK ID Type 2 (fixed),
    # the PPK_ID, then the first 8 octets of prf(PPK, Ni | Nr | SPIi | SPIr).
    from pqike.wire.codec import decode_payloads

    (req_sender, req), (_, resp) = last_int
    inner = decode_payloads(*_inner(opens(req_sender, req, pre)))
    (offer,) = [p for p in inner if getattr(p, "notify_type", None) == NotifyType.PPK_IDENTITY_KEY]
    confirmation = hmac.new(
        KEY, est.nonce_i + est.nonce_r + est.spi_i + est.spi_r, hashlib.sha384
    ).digest()[:8]
    assert offer.data == b"\x02ppk-1" + confirmation
    assert confirmation == ppk_confirmation(
        get_prf(6), KEY, est.nonce_i, est.nonce_r, est.spi_i, est.spi_r
    )
    answer = decode_payloads(*_inner(opens("responder", resp, pre)))
    assert [(p.notify_type, p.data) for p in answer if isinstance(p, NotifyPayload)] == [
        (NotifyType.PPK_IDENTITY, b"\x02ppk-1")
    ]
    # IKE_AUTH carries no PPK notify at all with RFC 9867.
    for sender, m in auth:
        inner_auth = decode_payloads(*_inner(opens(sender, m, post)))
        kinds = {p.notify_type for p in inner_auth if isinstance(p, NotifyPayload)}
        assert not kinds & {NotifyType.PPK_IDENTITY, NotifyType.NO_PPK_AUTH}


def _inner(unprotected):
    return unprotected.first_inner, unprotected.plaintext


def test_ike_sa_init_carries_use_ppk_int_and_the_responder_answers_only_that():
    seen, deliver = captured()
    result = run_handshake(X25519, initiator_options=PPK, responder_options=PPK, deliver=deliver)
    assert result.established, result.failures
    (_, request), (_, response) = messages(seen)[:2]
    kinds = [
        {p.notify_type for p in m.payloads if isinstance(p, NotifyPayload)}
        for m in (request, response)
    ]
    # RFC 9867 3: the initiator offers both ways, the responder answers one of them,
    # and IKE_INTERMEDIATE support goes with it even without an ADDKE.
    assert {
        NotifyType.USE_PPK_INT,
        NotifyType.USE_PPK,
        NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED,
    } <= kinds[0]
    assert NotifyType.USE_PPK_INT in kinds[1] and NotifyType.USE_PPK not in kinds[1]
    assert NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED in kinds[1]


def test_several_ppks_are_offered_and_the_responder_picks_the_one_it_has():
    ini = {**PPK, "ppks": ((b"ppk-2", b"\x22" * 32), (b"ppk-3", b"\x33" * 32))}
    res = {"ppk": b"\x33" * 32, "ppk_id": b"ppk-3", "ppk_mode": "rfc9867", "ppk_required": True}
    seen, deliver = captured()
    result = run_handshake(MLKEM, initiator_options=ini, responder_options=res, deliver=deliver)
    assert result.established, result.failures
    # One PPK_IDENTITY_KEY per PPK, in the initiator's order, in the ADDKE round's request.
    keys = KeySchedule.from_events(result.initiator_events)
    (request,) = [
        m for m in dissect(seen, keys) if m.exchange == "IKE_INTERMEDIATE" and not m.is_response
    ]
    assert [p.name for p in request.parts].count("N(PPK_IDENTITY_KEY)") == 3
    assert epochs(result, "initiator")[-1].ppk_id == b"ppk-3"
    assert epochs(result, "responder")[-1].ppk_id == b"ppk-3"
    assert final_keys(result, "initiator") == final_keys(result, "responder")


# --- when the PPKs do not match -----------------------------------------------------


def both_failed(result, notify=NotifyType.AUTHENTICATION_FAILED):
    assert not result.established
    reasons = []
    for side in ("initiator", "responder"):
        failed = events(result, side, IkeSaFailed)
        assert [f.notify for f in failed] == [notify], (side, failed)
        reasons.append(failed[0].reason)
    return reasons


@pytest.mark.parametrize("proposal", [X25519, MLKEM])
def test_a_wrong_ppk_mandatory_is_authentication_failed_on_both_sides(proposal):
    opts = {**PPK, "ppk_required": True}
    result = run_handshake(
        proposal, initiator_options=opts, responder_options={**opts, "ppk": bytes(32)}
    )
    reasons = both_failed(result)
    assert "no offered PPK_IDENTITY_KEY matched" in reasons[1]
    # The failure comes in IKE_INTERMEDIATE: no IKE_AUTH was ever sent.
    assert "IKE_AUTH" not in {m.exchange for m in result.trace.messages}


def test_an_unknown_ppk_id_mandatory_at_the_responder_fails_both():
    result = run_handshake(
        MLKEM,
        initiator_options=PPK,
        responder_options={**PPK, "ppk_id": b"other", "ppk_required": True},
    )
    both_failed(result)


def test_a_mandatory_initiator_gives_up_when_the_responder_chose_none():
    # The responder's PPK is optional and it does not know ours: it goes on without,
    # the initiator, which requires one, stops before IKE_AUTH.
    result = run_handshake(
        X25519,
        initiator_options={**PPK, "ppk_required": True},
        responder_options={**PPK, "ppk_id": b"other"},
    )
    assert not result.established
    (failed,) = events(result, "initiator", IkeSaFailed)
    assert failed.notify == NotifyType.AUTHENTICATION_FAILED
    assert "chose none of ours" in failed.reason


@pytest.mark.parametrize(
    "responder",
    [{"ppk_id": b"other"}, {"ppk": bytes(32)}],
    ids=["unknown-id", "wrong-ppk"],
)
@pytest.mark.parametrize("proposal", [X25519, MLKEM])
def test_an_optional_ppk_without_a_match_goes_on_without_it(proposal, responder):
    result = run_handshake(proposal, initiator_options=PPK, responder_options={**PPK, **responder})
    assert result.established, result.failures
    assert final_keys(result, "initiator") == final_keys(result, "responder")
    assert not any(e.ppk_id for e in epochs(result))
    # The exchange still ran, and IntAuth covers it (RFC 9242 3.3.2): every AUTH signed
    # IntAuth_i | IntAuth_r | MID, and the peer verified it.
    assert "IKE_INTERMEDIATE" in {m.exchange for m in result.trace.messages}
    signed = [e for side in ("initiator", "responder") for e in events(result, side, AuthComputed)]
    assert signed and all(len(e.int_auth) == 2 * 48 + 4 for e in signed)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x02", b"\x02" + bytes(8), b"\x02ppk"],
    ids=["empty", "type-only", "no-ppk-id", "no-confirmation"],
)
def test_a_malformed_ppk_identity_key_is_invalid_syntax(sa_pair, first_request, data):
    # The initiator's own IKE_INTERMEDIATE request is replaced by one, protected with
    # the real keys, whose PPK_IDENTITY_KEY cannot hold a PPK ID Type, a PPK_ID and the
    # 8-octet confirmation (RFC 9867 4).
    ini, res = sa_pair(X25519, **PPK)
    res.receive_datagram(first_request(ini), I_ADDR, now=0.0)
    for reply, _ in res.datagrams_to_send(now=0.0):
        ini.receive_datagram(reply, R_ADDR, now=0.0)
    ini.datagrams_to_send(now=0.0)  # the real request, with a good PPK_IDENTITY_KEY
    c = ini.gen.crypto
    header = IkeHeader(ini.spi_i, ini.spi_r, 0, ExchangeType.IKE_INTERMEDIATE, 0x08, 1)
    bad = NotifyPayload(NotifyType.PPK_IDENTITY_KEY, data)
    crafted = protect(header, [bad], c.cipher, c.keys.sk_ei, c.keys.sk_ai)
    res.receive_datagram(crafted.messages[0], I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(reply, R_ADDR, now=0.0)
    failed = {
        side: [e for e in drain(sa) if isinstance(e, IkeSaFailed)]
        for side, sa in (("initiator", ini), ("responder", res))
    }
    assert [f.notify for f in failed["responder"]] == [NotifyType.INVALID_SYNTAX]
    assert f"PPK_IDENTITY_KEY of {len(data)} bytes" in failed["responder"][0].reason
    assert [f.notify for f in failed["initiator"]] == [NotifyType.INVALID_SYNTAX]


def drain(sa):
    out = []
    while (e := sa.next_event()) is not None:
        out.append(e)
    return out


def test_a_responder_without_any_ppk_is_plain_ikev2_and_a_mandatory_initiator_stops():
    result = run_handshake(X25519, initiator_options=PPK)
    assert result.established, result.failures
    assert "IKE_INTERMEDIATE" not in {m.exchange for m in result.trace.messages}
    result = run_handshake(X25519, initiator_options={**PPK, "ppk_required": True})
    (failed,) = events(result, "initiator", IkeSaFailed)
    assert "did not send USE_PPK_INT or USE_PPK" in failed.reason


def test_a_responder_requiring_a_ppk_refuses_an_initiator_without():
    reasons = both_failed(run_handshake(MLKEM, responder_options={**PPK, "ppk_required": True}))
    assert "did not send USE_PPK_INT or USE_PPK" in reasons[1]


@pytest.mark.parametrize(("ini_mode", "res_mode"), [("rfc9867", "rfc8784"), ("rfc8784", "rfc9867")])
def test_an_rfc8784_peer_gets_the_ppk_the_rfc8784_way(ini_mode, res_mode):
    result = run_handshake(
        MLKEM,
        initiator_options={**PPK, "ppk_mode": ini_mode, "ppk_required": True},
        responder_options={**PPK, "ppk_mode": res_mode, "ppk_required": True},
    )
    assert result.established, result.failures
    assert not any(e.ppk_id for e in epochs(result))
    keys = final_keys(result, "initiator")
    assert keys == final_keys(result, "responder")
    # RFC 8784: SK_e unchanged from the last key exchange, SK_d PPK-mixed.
    last = epochs(result)[-1].keys
    assert keys.sk_ei == last.sk_ei and keys.sk_d != last.sk_d


# --- later in the SA's life ----------------------------------------------------------


@pytest.mark.parametrize("proposal", [X25519, MLKEM])
def test_ike_and_child_rekeys_work_after_a_ppk_handshake(proposal):
    result = run_handshake(
        proposal,
        esp="aes256gcm16-mlkem768",
        initiator_options=PPK,
        responder_options=PPK,
        then=("child", "ike", "responder:child", "responder:ike", "child"),
    )
    assert result.established, result.failures
    assert [p.ok for p in result.phases] == [True] * 6
    rekeys = [
        e
        for e in events(result, "initiator", IkeKeysDerived)
        if e.exchange == ExchangeType.CREATE_CHILD_SA
    ]
    # The first rekey derives from the PPK-derived SK_d (RFC 7296 2.18).
    assert rekeys and rekeys[0].previous_sk_d == epochs(result)[-1].keys.sk_d


# --- with loss -------------------------------------------------------------------------


@pytest.mark.parametrize("proposal", [X25519, TWO_ROUNDS])
def test_any_single_lost_datagram_including_the_ppk_exchange_still_establishes(proposal):
    n = run_handshake(proposal, initiator_options=PPK, responder_options=PPK).trace.totals()[
        "datagrams"
    ]
    for victim in range(n):

        def deliver(sender, data, index, victim=victim):
            return [] if index == victim else [data]

        result = run_handshake(
            proposal, initiator_options=PPK, responder_options=PPK, deliver=deliver
        )
        assert result.established, (victim, result.failures)
        assert final_keys(result, "initiator") == final_keys(result, "responder")
        assert epochs(result)[-1].ppk_id == b"ppk-1"


def test_the_lossy_link_drops_ppk_exchange_datagrams_and_the_ppk_still_holds():
    lost_ppk_exchange = established = 0
    for seed in range(12):
        ini = make_config(
            MLKEM,
            local_id="i.example",
            remote_id="r.example",
            psk=b"p" * 16,
            retransmit_timeout=0.5,
            **PPK,
        )
        res = make_config(MLKEM, local_id="r.example", psk=b"p" * 16, **PPK)
        from pqike.ike.sa import IkeSa

        run = simulate_handshake(
            IkeSa(ini, is_initiator=True, local=("192.0.2.1", 500), remote=("192.0.2.2", 500)),
            IkeSa(res, is_initiator=False, local=("192.0.2.2", 500), remote=("192.0.2.1", 500)),
            forward=LinkProfile(delay=0.02, loss=0.3),
            seed=seed,
            then=("child",),
        )
        for d, fate in zip(run.trace.datagrams, run.fates, strict=True):
            if d.exchange == "IKE_INTERMEDIATE" and fate.fate == "lost":
                lost_ppk_exchange += 1
        if not run.established:
            continue
        established += 1
        keys = [e.keys for e in run.initiator_events if isinstance(e, IkeSaEstablished)]
        assert keys == [e.keys for e in run.responder_events if isinstance(e, IkeSaEstablished)]
        assert [e.ppk_id for e in run.initiator_events if isinstance(e, IkeKeysDerived)][
            2
        ] == b"ppk-1"
    assert lost_ppk_exchange > 0 and established > 6


# --- the transcript, the decoder and the configuration --------------------------------


def test_the_transcript_names_the_ppk_id_and_the_decoder_decrypts_ike_auth():
    seen, deliver = captured()
    result = run_handshake(MLKEM, initiator_options=PPK, responder_options=PPK, deliver=deliver)
    ppk_epoch = epochs(result)[-1]
    (record,) = records_of(ppk_epoch)
    assert record.fields["ppk_id"] == b"ppk-1" and record.fields["ke"] == ()
    assert KEY.hex() not in record.format()
    keys = KeySchedule.from_events(result.initiator_events)
    names = [
        " ".join(part.name for part in m.parts)
        for m in dissect(seen, keys)
        if m.decrypted and m.exchange in ("IKE_INTERMEDIATE", "IKE_AUTH")
    ]
    assert any("N(PPK_IDENTITY_KEY)" in n for n in names)
    assert any("N(PPK_IDENTITY)" in n for n in names)
    assert sum("AUTH" in n.split() for n in names) == 2


def test_the_configuration_accepts_rfc9867_and_names_bad_fields():
    cfg = make_config(X25519, local_id="a.example", psk=b"p" * 16, **PPK)
    assert cfg.ppk_mode == "rfc9867" and cfg.all_ppks == ((b"ppk-1", KEY),)
    with pytest.raises(ConfigurationError, match="ppk_mode must be one of rfc8784, rfc9867"):
        make_config(X25519, local_id="a.example", psk=b"p" * 16, ppk_mode="rfc9999")
    with pytest.raises(ConfigurationError, match="ppks"):
        make_config(X25519, local_id="a.example", psk=b"p" * 16, **PPK, ppks=(("x", "y"),))
    with pytest.raises(ConfigurationError, match="ppks come after"):
        make_config(X25519, local_id="a.example", psk=b"p" * 16, ppks=((b"x", b"y"),))


@pytest.mark.parametrize(
    ("auth", "mode"), [("psk+ppk9867", "rfc9867"), ("p256+ppk8784", "rfc8784")]
)
def test_run_handshake_auth_adds_the_demo_ppk(auth, mode):
    result = run_handshake(MLKEM, auth=auth)
    assert result.established, result.failures
    assert result.initiator.config.ppk_mode == mode and result.initiator.config.ppk_required
    assert any(e.ppk_id for e in epochs(result)) == (mode == "rfc9867")
    with pytest.raises(ValueError, match="must be one of ppk8784, ppk9867"):
        run_handshake(MLKEM, auth="psk+ppk")


def test_pqike_handshake_then_dissect_shows_and_checks_the_ppk(tmp_path):
    import json

    from typer.testing import CliRunner

    from pqike.cli import app

    pcap, secrets = tmp_path / "h.pcap", tmp_path / "h.secrets"
    runner = CliRunner()
    args = ["handshake", "-p", MLKEM, "--auth", "psk+ppk9867"]
    out = runner.invoke(app, [*args, "--pcap", str(pcap), "--secrets", str(secrets)])
    assert out.exit_code == 0, out.output
    assert "PPK: 'pqike-demo-ppk' mixed into every IKE SA key" in out.output
    out = runner.invoke(app, ["dissect", str(pcap), "-s", str(secrets), "--json"])
    assert out.exit_code == 0, out.output  # every check holds
    text = json.dumps(json.loads(out.output))
    assert '"ppk_id_type": "PPK_ID_FIXED", "ppk_id": "pqike-demo-ppk", "ppk_confirmation"' in text
    assert "PPK b'pqike-demo-ppk' mixed in (RFC 9867)" in text
