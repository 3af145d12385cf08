"""Every impairment between two pqike peers, with the reaction the RFCs ask of the
well-behaved side. The catalogue test makes sure none is left without one."""

from __future__ import annotations

import pytest

from pqike.constants import NotifyType
from pqike.errors import ConfigurationError
from pqike.handshake import make_config, run_handshake
from pqike.ike.events import (
    CreateChildSaFailed,
    DatagramDropped,
    IkeSaFailed,
    IntAuthComputed,
)
from pqike.ike.impair import IMPAIRMENTS, check_impairments

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
ESP = "aes256gcm16-x25519-ke1_mlkem768"
CLASSICAL = "aes256gcm16-prfsha384-x25519"


def run(name: str, role: str = "initiator", proposal: str = HYBRID, **kw):
    options = {"impairments": frozenset({name})}
    key = "initiator_options" if role == "initiator" else "responder_options"
    kw.setdefault("esp", ESP)
    return run_handshake(proposal, **{key: options}, **kw)


def failure(events) -> IkeSaFailed | None:
    return next((e for e in events if isinstance(e, IkeSaFailed)), None)


def sent_notify(result, side: str, notify: int) -> bool:
    """``side`` reported a failure with ``notify`` (it sent or received that Notify)."""
    events = result.initiator_events if side == "initiator" else result.responder_events
    f = failure(events)
    return f is not None and f.notify == notify


def drops(events, text: str) -> int:
    return sum(1 for e in events if isinstance(e, DatagramDropped) and text in e.reason)


# Each check: (impairment, role, run options, assertion on the result).


def _omit_addke_notify():
    r = run("omit-addke-notify", "responder", then=["child"])
    assert r.established
    failed = [e for e in r.initiator_events if isinstance(e, CreateChildSaFailed)]
    # RFC 9370 2.2.4: without the notify the initiator cannot link IKE_FOLLOWUP_KE: the
    # exchange ends, the IKE SA stays.
    assert failed and "ADDITIONAL_KEY_EXCHANGE is missing" in failed[0].reason
    assert r.initiator.is_established


def _addke_notify_on_last():
    r = run("addke-notify-on-last", "responder", then=["child"])
    # The extra notify (libreswan #2926) carries nothing the initiator needs: it finishes.
    assert r.established and all(p.ok for p in r.phases)


def _run_none_round():
    r = run(
        "run-none-round",
        proposal="aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none",
        responder_proposal=CLASSICAL,
    )
    # The responder selected no ADDKE1, so an IKE_INTERMEDIATE request is out of order:
    # refused with INVALID_SYNTAX (RFC 7296 2.21.2), and no IKE SA comes up.
    assert not r.established
    assert sent_notify(r, "initiator", NotifyType.INVALID_SYNTAX)


def _unencrypted_payload():
    for role in ("initiator", "responder"):
        r = run("unencrypted-payload", role, fragment_size=1500)
        # RFC 9242 3.3.2: A covers the payloads before SK, on both sides alike.
        assert r.established, role
        a = [e.a for e in r.initiator_events if isinstance(e, IntAuthComputed)]
        b = [e.a for e in r.responder_events if isinstance(e, IntAuthComputed)]
        assert a == b and any(len(x) > 32 for x in a)
    # Fragmented too: the clear payload rides in fragment 1, which still fits.
    r = run("unencrypted-payload", fragment_size=1280)
    assert r.established
    assert max(d.ip_bytes for d in r.trace.datagrams) <= 1280
    assert any(m.fragments for m in r.trace.messages if m.exchange == "IKE_INTERMEDIATE")


def _wrong_int_auth():
    r = run("wrong-int-auth")
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.AUTHENTICATION_FAILED)
    r = run("wrong-int-auth", "responder")
    assert not r.established
    assert sent_notify(r, "initiator", NotifyType.AUTHENTICATION_FAILED)


def _auth_without_int_auth():
    r = run("auth-without-int-auth")
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.AUTHENTICATION_FAILED)


def _phantom_int_auth():
    r = run("phantom-int-auth", proposal=CLASSICAL, esp="aes256gcm16")
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.AUTHENTICATION_FAILED)


def _bad_mlkem_key():
    r = run("bad-mlkem-key")
    # draft-ietf-ipsecme-ikev2-mlkem 2.2: INVALID_SYNTAX and the IKE SA is not created.
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.INVALID_SYNTAX)
    assert failure(r.responder_events).round == 1  # type: ignore[union-attr]


def _short_ciphertext():
    r = run("short-ciphertext", "responder")
    # The initiator ends the exchange and sends no IKE_AUTH (draft-ietf-ipsecme-ikev2-mlkem 2.2).
    assert not r.established
    f = failure(r.initiator_events)
    assert f is not None and f.round == 1 and "bad KEr" in f.reason
    assert not any(m.exchange == "IKE_AUTH" for m in r.trace.messages)


def _wrong_ke_method():
    r = run("wrong-ke-method")
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.INVALID_SYNTAX)


def _duplicate_fragment():
    r = run("duplicate-fragment")
    # RFC 7383 2.6: a duplicate fragment is ignored.
    assert r.established
    assert r.responder.stats.get("fragments_duplicate", 0) >= 1


def _overlapping_fragments():
    r = run("overlapping-fragments")
    # The joined plaintext does not parse: INVALID_SYNTAX (RFC 7296 2.21.2).
    assert not r.established
    assert sent_notify(r, "responder", NotifyType.INVALID_SYNTAX)


def _out_of_range_fragment():
    r = run("out-of-range-fragment")
    # RFC 7383 2.6: a fragment numbered beyond Total Fragments is discarded.
    assert r.established


def _changed_total():
    r = run("changed-total")
    # RFC 7383 2.6.1: a larger total restarts reassembly, which never completes: the
    # responder never answers and the initiator gives up after its retransmissions.
    assert not r.established
    f = failure(r.initiator_events)
    assert f is not None and f.notify is None and "retransmissions" in f.reason
    assert r.responder.stats.get("messages_reassembled", 0) == 0


def _strip_addke():
    r = run("strip-addke", "responder")
    # RFC 9370 2.2.1: the initiator refuses a selection without its mandatory ADDKE.
    assert not r.established
    f = failure(r.initiator_events)
    assert f is not None and f.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert "responder chose badly" in f.reason


def _retransmit_changed_nonce():
    r = run("retransmit-changed-nonce")
    # RFC 7296 2.1: not a retransmission of the request answered: dropped, and the SA
    # set up with the first request comes up.
    assert r.established
    assert drops(r.responder_events, "different IKE_SA_INIT with the same SPI") == 1


CHECKS = {
    "omit-addke-notify": _omit_addke_notify,
    "addke-notify-on-last": _addke_notify_on_last,
    "run-none-round": _run_none_round,
    "unencrypted-payload": _unencrypted_payload,
    "wrong-int-auth": _wrong_int_auth,
    "auth-without-int-auth": _auth_without_int_auth,
    "phantom-int-auth": _phantom_int_auth,
    "bad-mlkem-key": _bad_mlkem_key,
    "short-ciphertext": _short_ciphertext,
    "wrong-ke-method": _wrong_ke_method,
    "duplicate-fragment": _duplicate_fragment,
    "overlapping-fragments": _overlapping_fragments,
    "out-of-range-fragment": _out_of_range_fragment,
    "changed-total": _changed_total,
    "strip-addke": _strip_addke,
    "retransmit-changed-nonce": _retransmit_changed_nonce,
}


def test_every_impairment_has_a_check():
    assert set(CHECKS) == set(IMPAIRMENTS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_reaction(name):
    CHECKS[name]()


def test_unknown_impairment_is_refused():
    with pytest.raises(ConfigurationError, match="unknown impairment 'no-such'"):
        check_impairments(["no-such"])
    with pytest.raises(ConfigurationError, match="unknown impairment"):
        make_config(CLASSICAL, local_id="a", impairments=frozenset({"no-such"}))


def test_no_impairment_changes_nothing():
    # The same bytes with and without an impairment that never fires in this suite.
    plain = run_handshake(CLASSICAL)
    impaired = run("omit-addke-notify", "responder", proposal=CLASSICAL, esp="aes256gcm16")
    assert plain.established and impaired.established
    assert plain.trace.sequence() == impaired.trace.sequence()
