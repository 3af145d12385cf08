"""An IKE SA's life after the handshake, between two in-memory pqike peers.

CREATE_CHILD_SA (RFC 7296 1.3) for new Child SAs and for rekeys, with the additional key
exchanges of RFC 9370 2.2.4 in IKE_FOLLOWUP_KE; rekey collisions (2.8.1, 2.8.2);
INFORMATIONAL Deletes (1.4.1) and liveness checks; lifetimes; and the same network
faults the handshake survives.
"""

from __future__ import annotations

import pytest

from pqike.constants import ExchangeType, NotifyType
from pqike.crypto.keys import derive_child_keys
from pqike.handshake import make_config, run_handshake
from pqike.ike import IkeSa
from pqike.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    CreateChildSaFailed,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    KeyExchangeCompleted,
    LivenessChecked,
    Purpose,
)
from pqike.ike.protection import protect
from pqike.wire.codec import decode_message
from pqike.wire.payloads import IkeHeader, KePayload, NotifyPayload

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
TWO_ROUNDS = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
ESP_HYBRID = "aes256gcm16-x25519-ke1_mlkem768"
I_ADDR = ("192.0.2.1", 500)
R_ADDR = ("192.0.2.2", 500)


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def pair(ike=HYBRID, esp=ESP_HYBRID, *, responder_esp=None, **options):
    ini = IkeSa(
        make_config(ike, esp, local_id="i.example", remote_id="r.example", **options),
        is_initiator=True,
        local=I_ADDR,
        remote=R_ADDR,
    )
    res = IkeSa(
        make_config(ike, responder_esp or esp, local_id="r.example", **options),
        is_initiator=False,
        local=R_ADDR,
        remote=I_ADDR,
    )
    return ini, res


class Wire:
    """Two peers and the datagrams between them, stepped by hand in simulated time."""

    def __init__(self, ini: IkeSa, res: IkeSa) -> None:
        self.sides = {"i": ini, "r": res}
        self.events: dict[str, list] = {"i": [], "r": []}
        self.now = 0.0

    def pump(self, *, hook=None) -> None:
        """Deliver until nothing moves; ``hook(sender, data)`` may rewrite or drop."""
        for _ in range(1000):
            moved = False
            for name, other in (("i", "r"), ("r", "i")):
                src, dst = self.sides[name], self.sides[other]
                for data, to in src.datagrams_to_send(now=self.now):
                    for d in hook(name, data) if hook else [data]:
                        dst.receive_datagram(d, src.local, now=self.now, local=to)
                        moved = True
            for name, sa in self.sides.items():
                while (e := sa.next_event()) is not None:
                    self.events[name].append(e)
            if not moved:
                return
        raise AssertionError("the peers never went quiet")

    def advance(self, until: float, *, hook=None) -> None:
        """Run timers up to ``until``, delivering whatever they send."""
        self.pump(hook=hook)
        while True:
            timers = [t for sa in self.sides.values() if (t := sa.get_timer()) is not None]
            if not timers or min(timers) > until:
                self.now = until
                return
            self.now = max(self.now, min(timers))
            for sa in self.sides.values():
                t = sa.get_timer()
                if t is not None and t <= self.now:
                    sa.handle_timer(now=self.now)
            self.pump(hook=hook)


def established(ike=HYBRID, esp=ESP_HYBRID, **kw) -> Wire:
    ini, res = pair(ike, esp, **kw)
    wire = Wire(ini, res)
    ini.initiate(now=0.0)
    wire.pump()
    assert ini.is_established and res.is_established
    return wire


# --------------------------------------------------------------------------- rekeys


def test_child_rekey_with_pfs_and_an_additional_key_exchange():
    result = run_handshake(HYBRID, ESP_HYBRID, then=["child"])
    phase = result.phases[1]
    assert phase.ok, phase.failure
    exchanges = [m.exchange for m in result.trace.messages if m.phase == "child"]
    assert exchanges == ["CREATE_CHILD_SA"] * 2 + ["IKE_FOLLOWUP_KE"] * 2 + ["INFORMATIONAL"] * 2
    new_i = of(result.initiator_events, ChildSaEstablished)[-1]
    new_r = of(result.responder_events, ChildSaEstablished)[-1]
    assert new_i.purpose is Purpose.REKEY_CHILD and new_i.key_exchanges == 2
    assert new_i.keys == new_r.keys and (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    # RFC 9370 2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1)), recomputed here.
    secrets = [
        e.shared_secret
        for e in result.initiator_events
        if isinstance(e, KeyExchangeCompleted) and e.purpose is Purpose.REKEY_CHILD
    ]
    assert len(secrets) == 2
    first_child = of(result.initiator_events, ChildSaEstablished)[0]
    old_spi = first_child.spi_i
    assert new_i.rekeyed_spi == old_spi
    deleted_i = of(result.initiator_events, ChildSaDeleted)
    deleted_r = of(result.responder_events, ChildSaDeleted)
    assert [d.spi_in for d in deleted_i] == [old_spi] and not deleted_i[0].by_peer
    assert [d.spi_out for d in deleted_r] == [old_spi] and deleted_r[0].by_peer
    assert list(result.initiator.children) == [new_i.spi_i]
    assert list(result.responder.children) == [new_i.spi_r]


def test_child_rekey_keymat_chains_every_secret_in_round_order():
    """RFC 9370 2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))."""
    result = run_handshake(
        TWO_ROUNDS, "aes256gcm16-x25519-ke1_mlkem768-ke2_mlkem1024", then=["child"]
    )
    assert result.phases[1].ok
    ike = of(result.initiator_events, IkeSaEstablished)[0]
    new = of(result.initiator_events, ChildSaEstablished)[-1]
    secrets = [
        e.shared_secret
        for e in result.initiator_events
        if isinstance(e, KeyExchangeCompleted) and e.purpose is Purpose.REKEY_CHILD
    ]
    assert len(secrets) == 3 and new.key_exchanges == 3
    expected = derive_child_keys(
        result.initiator.gen.crypto.prf,
        ike.keys.sk_d,
        new.nonce_i,
        new.nonce_r,
        encr_key_size=36,
        integ_key_size=0,
        shared_secret=secrets[0],
        additional_secrets=tuple(secrets[1:]),
    )
    assert new.keys == expected
    assert new.nonce_i not in (ike.nonce_i, ike.nonce_r)


def test_child_rekey_without_pfs_runs_no_key_exchange():
    result = run_handshake(HYBRID, "aes256gcm16", then=["child"])
    assert result.phases[1].ok
    assert [m.exchange for m in result.trace.messages if m.phase == "child"] == [
        "CREATE_CHILD_SA",
        "CREATE_CHILD_SA",
        "INFORMATIONAL",
        "INFORMATIONAL",
    ]
    assert of(result.initiator_events, ChildSaEstablished)[-1].key_exchanges == 0


@pytest.mark.parametrize(("ike", "rounds"), [(HYBRID, 1), (TWO_ROUNDS, 2)])
def test_ike_rekey_with_additional_key_exchanges(ike, rounds):
    result = run_handshake(ike, ESP_HYBRID, then=["ike", "liveness"])
    assert [p.ok for p in result.phases] == [True, True, True]
    followups = [m for m in result.trace.messages if m.exchange == "IKE_FOLLOWUP_KE"]
    assert len(followups) == 2 * rounds
    # RFC 9370 2.2.4: the last IKE_FOLLOWUP_KE response carries no link (libreswan #2926).
    last = followups[-1]
    assert last.is_response and " N" not in last.payloads
    ri = of(result.initiator_events, IkeSaRekeyed)[0]
    rr = of(result.responder_events, IkeSaRekeyed)[0]
    assert ri.keys == rr.keys and ri.key_exchanges == rounds + 1
    assert (ri.spi_i, ri.spi_r) == (rr.spi_i, rr.spi_r)
    assert (ri.old_spi_i, ri.old_spi_r) != (ri.spi_i, ri.spi_r)
    assert result.initiator.spi_i == ri.spi_i and result.responder.spi_r == ri.spi_r
    # The liveness check after the rekey ran on the new SA, from message ID 0.
    live = [m for m in result.trace.messages if m.phase == "liveness"]
    assert [m.message_id for m in live] == [0, 0]
    # The old IKE SA's Delete went out on the old SA and was answered empty.
    deletes = [
        m for m in result.trace.messages if m.phase == "ike" and m.exchange == "INFORMATIONAL"
    ]
    assert [m.payloads for m in deletes] == ["SK{D}", "SK{}"]


def test_ike_rekey_uses_the_new_spis_and_old_sk_d():
    """RFC 7296 2.18 / RFC 9370 2.2.4: SKEYSEED = prf(SK_d(old), SK(0)|Ni|Nr|SK(1)), keys
    from prf+(SKEYSEED, Ni|Nr|SPIi|SPIr) with the new SPIs (never the old: libreswan #2958)."""
    from pqike.crypto.keys import derive_ike_keys, skeyseed_additional

    result = run_handshake(HYBRID, ESP_HYBRID, then=["ike"])
    old = of(result.initiator_events, IkeSaEstablished)[0]
    new = of(result.initiator_events, IkeSaRekeyed)[0]
    secrets = [
        e.shared_secret
        for e in result.initiator_events
        if isinstance(e, KeyExchangeCompleted) and e.purpose is Purpose.REKEY_IKE
    ]
    prf = result.initiator.gen.crypto.prf
    seed = skeyseed_additional(
        prf, old.keys.sk_d, secrets[0], new.nonce_i, new.nonce_r, additional_secrets=secrets[1:]
    )
    expected = derive_ike_keys(
        prf,
        seed,
        new.nonce_i,
        new.nonce_r,
        new.spi_i,
        new.spi_r,
        encr_key_size=36,
        integ_key_size=0,
    )
    assert new.keys == expected


def test_a_round_selected_none_on_rekey_is_not_run():
    result = run_handshake(
        HYBRID,
        "aes256gcm16-x25519-ke1_mlkem768-ke1_none",
        responder_esp="aes256gcm16-x25519",
        then=["child"],
    )
    assert result.phases[1].ok
    assert not [m for m in result.trace.messages if m.exchange == "IKE_FOLLOWUP_KE"]
    assert of(result.initiator_events, ChildSaEstablished)[-1].key_exchanges == 1


def test_a_required_round_the_responder_drops_fails_the_rekey_only():
    result = run_handshake(
        HYBRID, ESP_HYBRID, responder_esp="aes256gcm16-x25519", then=["child", "liveness"]
    )
    child, live = result.phases[1:]
    assert not child.ok and live.ok
    failed = of(result.initiator_events, CreateChildSaFailed) + of(
        result.responder_events, CreateChildSaFailed
    )
    assert {f.notify for f in failed} == {NotifyType.NO_PROPOSAL_CHOSEN}
    assert result.initiator.is_established and len(result.initiator.children) == 1


def test_responder_side_rekeys_and_new_children():
    result = run_handshake(
        HYBRID,
        ESP_HYBRID,
        then=["responder:child", "responder:ike", "new-child", "responder:new-child"],
    )
    assert all(p.ok for p in result.phases), [p.failure for p in result.phases]
    assert len(result.initiator.children) == len(result.responder.children) == 3
    ini_out = sorted(c.spi_out for c in result.initiator.children.values())
    assert ini_out == sorted(result.responder.children)


def test_invalid_ke_payload_makes_the_initiator_retry_the_rekey():
    result = run_handshake(
        HYBRID,
        "aes256gcm16-x25519-ecp256",
        responder_esp="aes256gcm16-ecp256",
        then=["child"],
    )
    assert result.phases[1].ok
    child = [m for m in result.trace.messages if m.phase == "child"]
    assert [m.exchange for m in child[:4]] == ["CREATE_CHILD_SA"] * 4
    assert result.initiator.stats["invalid_ke_received"] == 1


# --------------------------------------------------------------------------- delete, liveness


def test_child_delete_is_answered_with_the_paired_delete():
    result = run_handshake(HYBRID, ESP_HYBRID, then=["new-child", "delete-child"])
    deletes = [m for m in result.trace.messages if m.phase == "delete-child"]
    assert [m.payloads for m in deletes] == ["SK{D}", "SK{D}"]
    assert len(result.initiator.children) == len(result.responder.children) == 1
    gone_i = of(result.initiator_events, ChildSaDeleted)
    gone_r = of(result.responder_events, ChildSaDeleted)
    assert [(d.spi_in, d.spi_out) for d in gone_i] == [(d.spi_out, d.spi_in) for d in gone_r]


def test_ike_delete_takes_every_child_sa_with_it():
    result = run_handshake(HYBRID, ESP_HYBRID, then=["new-child", "responder:delete"])
    assert result.phases[-1].ok
    assert result.initiator.state.name == "DELETED" and result.responder.state.name == "DELETED"
    assert len(of(result.initiator_events, ChildSaDeleted)) == 2


def test_liveness_check_and_a_dead_peer():
    wire = established(dpd_delay=10.0)
    ini, _res = wire.sides["i"], wire.sides["r"]
    wire.advance(15.0)
    assert of(wire.events["i"], LivenessChecked) and of(wire.events["r"], LivenessChecked)
    # From now on the responder hears nothing: after the retransmission schedule the
    # initiator declares it dead.
    wire.advance(400.0, hook=lambda sender, data: [] if sender == "i" else [data])
    failed = of(wire.events["i"], IkeSaFailed)
    assert failed and failed[0].reason.startswith("the peer is dead")
    assert ini.is_closed


# --------------------------------------------------------------------------- collisions


def test_simultaneous_child_rekeys_keep_one_child_sa():
    wire = established()
    ini, res = wire.sides["i"], wire.sides["r"]
    (spi,) = ini.children
    ini.rekey_child(now=1.0)
    res.rekey_child(now=1.0)
    wire.pump()
    assert ini.is_idle and res.is_idle
    assert len(ini.children) == len(res.children) == 1
    (child_i,) = ini.children.values()
    (child_r,) = res.children.values()
    assert child_i.spi_out == child_r.spi_in and child_i.keys == child_r.keys
    assert spi not in ini.children
    assert (
        ini.stats.get("child_rekey_collisions", 0) + res.stats.get("child_rekey_collisions", 0) == 2
    )


def test_simultaneous_ike_rekeys_keep_one_ike_sa():
    wire = established()
    ini, res = wire.sides["i"], wire.sides["r"]
    ini.rekey(now=1.0)
    res.rekey(now=1.0)
    wire.pump()
    assert ini.is_idle and res.is_idle
    assert (ini.spi_i, ini.spi_r) == (res.spi_i, res.spi_r)
    assert ini.gen.crypto.keys == res.gen.crypto.keys
    ini.check_liveness(now=2.0)
    wire.pump()
    assert of(wire.events["i"], LivenessChecked)


# --------------------------------------------------------------------------- refusals, faults


def test_create_child_sa_on_a_half_open_sa_is_refused_and_creates_nothing():
    ini, res = pair()
    ini.initiate(now=0.0)
    for data, _ in ini.datagrams_to_send(now=0.0):
        res.receive_datagram(data, I_ADDR, now=0.0)
    for data, _ in res.datagrams_to_send(now=0.0):
        ini.receive_datagram(data, R_ADDR, now=0.0)
    ini.datagrams_to_send(now=0.0)  # the IKE_INTERMEDIATE request: withheld
    c = ini.gen.crypto
    header = IkeHeader(ini.spi_i, ini.spi_r, 0, ExchangeType.CREATE_CHILD_SA, 0x08, 1)
    pm = protect(header, [NotifyPayload(NotifyType.REKEY_SA)], c.cipher, c.keys.sk_ei, c.keys.sk_ai)
    res.receive_datagram(pm.messages[0], I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    assert decode_message(reply).header.exchange_type == ExchangeType.CREATE_CHILD_SA
    assert not res.children and not res.is_established
    assert res.stats["refused_requests"] == 1
    assert not [e for e in iter(res.next_event, None) if isinstance(e, ChildSaEstablished)]


def test_tampered_followup_fails_the_rekey_not_the_ike_sa():
    """A KEi of the wrong length in IKE_FOLLOWUP_KE, properly protected: the responder
    answers INVALID_SYNTAX (draft-ietf-ipsecme-ikev2-mlkem 2.2), the rekey fails on both
    sides, and the old IKE SA and Child SA carry on."""
    wire = established()
    ini, res = wire.sides["i"], wire.sides["r"]
    (old_spi,) = ini.children

    def tamper(sender, data):
        message = decode_message(data)
        if sender != "i" or message.header.exchange_type != ExchangeType.IKE_FOLLOWUP_KE:
            return [data]
        c = ini.gen.crypto
        link = ini.child_out.link
        payloads = [
            KePayload(36, b"\x01" * 100),
            NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, link),
        ]
        return [protect(message.header, payloads, c.cipher, c.keys.sk_ei, c.keys.sk_ai).messages[0]]

    ini.rekey_child(now=1.0)
    wire.pump(hook=tamper)
    for side in "ir":
        failed = of(wire.events[side], CreateChildSaFailed)
        assert [f.notify for f in failed] == [NotifyType.INVALID_SYNTAX], side
        assert not of(wire.events[side], IkeSaFailed)
    assert list(ini.children) == [old_spi] and ini.children[old_spi].state.name == "INSTALLED"
    assert ini.is_idle and res.is_idle
    ini.rekey_child(now=2.0)
    wire.pump()
    assert of(wire.events["i"], ChildSaEstablished)[-1].purpose is Purpose.REKEY_CHILD


def test_followup_with_an_unknown_link_gets_state_not_found():
    wire = established()
    ini, res = wire.sides["i"], wire.sides["r"]

    def relink(sender, data):
        message = decode_message(data)
        if sender != "i" or message.header.exchange_type != ExchangeType.IKE_FOLLOWUP_KE:
            return [data]
        c = ini.gen.crypto
        ke = ini.child_out.rounds.kex.public_data()
        payloads = [KePayload(36, ke), NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, b"nope")]
        return [protect(message.header, payloads, c.cipher, c.keys.sk_ei, c.keys.sk_ai).messages[0]]

    ini.rekey_child(now=1.0)
    wire.pump(hook=relink)
    assert [f.notify for f in of(wire.events["i"], CreateChildSaFailed)] == [
        NotifyType.STATE_NOT_FOUND
    ]
    assert ini.is_established and res.is_established


def _lose(victim):
    return lambda sender, data, index: [] if index == victim else [data]


def _duplicate(victim):
    return lambda sender, data, index: [data, data] if index == victim else [data]


def _swap(victim):
    held: dict[str, bytes] = {}

    def deliver(sender, data, index):
        if index == victim:
            held[sender] = data
            return []
        if sender in held:
            return [data, held.pop(sender)]
        return [data]

    return deliver


@pytest.mark.parametrize("phase", ["child", "ike"])
@pytest.mark.parametrize("fault", [_lose, _duplicate, _swap])
def test_any_single_datagram_fault_in_a_rekey_still_rekeys(phase, fault):
    clean = run_handshake(HYBRID, ESP_HYBRID, then=[phase])
    first = clean.phases[0].totals["datagrams"]
    total = clean.trace.totals()["datagrams"]
    for victim in range(first, total):
        result = run_handshake(HYBRID, ESP_HYBRID, then=[phase], deliver=fault(victim))
        assert result.phases[1].ok, (fault.__name__, victim, result.phases[1].failure)
        assert result.initiator.is_idle and result.responder.is_idle
        if phase == "ike":
            assert result.initiator.gen.crypto.keys == result.responder.gen.crypto.keys
        else:
            (ci,) = result.initiator.children.values()
            (cr,) = result.responder.children.values()
            assert ci.keys == cr.keys and ci.spi_out == cr.spi_in


# --------------------------------------------------------------------------- lifetimes


def test_lifetimes_rekey_twenty_times_without_losing_an_sa():
    wire = established(rekey_time=25.0, rand_time=5.0, child_rekey_time=10.0, child_rand_time=2.0)
    ini, res = wire.sides["i"], wire.sides["r"]
    wire.advance(220.0)
    child_rekeys = [
        e
        for e in wire.events["i"] + wire.events["r"]
        if isinstance(e, ChildSaEstablished) and e.purpose is Purpose.REKEY_CHILD
    ]
    ike_rekeys = of(wire.events["i"], IkeSaRekeyed)
    assert len(child_rekeys) >= 20 and len(ike_rekeys) >= 6
    assert ini.is_established and res.is_established
    assert not of(wire.events["i"] + wire.events["r"], IkeSaFailed)
    assert not of(wire.events["i"] + wire.events["r"], CreateChildSaFailed)
    assert len(ini.children) == len(res.children) == 1
    (ci,) = ini.children.values()
    (cr,) = res.children.values()
    assert ci.keys == cr.keys and (ini.spi_i, ini.spi_r) == (res.spi_i, res.spi_r)


def test_hard_lifetime_deletes_a_child_sa_that_was_not_rekeyed():
    ini, res = pair(
        child_rekey_time=10.0, child_life_time=12.0, child_rand_time=0.0, rekey_time=0.0
    )
    # The responder wants no PFS, so the initiator's rekey is refused (NO_PROPOSAL_CHOSEN).
    res = IkeSa(
        make_config(HYBRID, "aes256gcm16", local_id="r.example", child_rekey_time=0.0),
        is_initiator=False,
        local=R_ADDR,
        remote=I_ADDR,
    )
    wire = Wire(ini, res)
    ini.initiate(now=0.0)
    wire.advance(13.0)
    assert [f.notify for f in of(wire.events["i"], CreateChildSaFailed)] == [
        NotifyType.NO_PROPOSAL_CHOSEN
    ]
    assert [d.reason for d in of(wire.events["i"], ChildSaDeleted)] == ["hard lifetime"]
    assert [d.by_peer for d in of(wire.events["r"], ChildSaDeleted)] == [True]
    assert not ini.children and not res.children and ini.is_established
