"""Failures are reported as they happened on the wire (defects found in interop).

- A refused Child SA in IKE_AUTH is a Child SA failure on both sides, naming the Notify
  (RFC 7296 1.2: the IKE SA comes up, the Child SA does not).
- An IKE_SA_INIT refused without state (RFC 7296 2.6) reports SPIr 0, the SPI that went
  on the wire, not one the responder would have picked.
"""

from __future__ import annotations

from pqike.constants import NotifyType
from pqike.handshake import make_config, run_handshake
from pqike.ike import IkeSa
from pqike.ike.events import CreateChildSaFailed, IkeSaFailed, Purpose
from pqike.wire.codec import decode_message

I_ADDR = ("192.0.2.1", 500)
R_ADDR = ("192.0.2.2", 500)


def test_an_esp_mismatch_is_a_child_sa_failure_on_both_sides():
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519", "aes256gcm16", responder_esp="aes128gcm16"
    )
    assert result.established
    (res_fail,) = [e for e in result.responder_events if isinstance(e, CreateChildSaFailed)]
    (ini_fail,) = [e for e in result.initiator_events if isinstance(e, CreateChildSaFailed)]
    for failed in (res_fail, ini_fail):
        assert failed.purpose is Purpose.IKE_AUTH
        assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert "NO_PROPOSAL_CHOSEN" in ini_fail.reason
    assert not result.initiator.children and not result.responder.children


def test_a_stateless_refusal_reports_the_spi_that_went_on_the_wire():
    ini = IkeSa(
        make_config("aes256gcm16-prfsha384-x25519", local_id="i.example"),
        is_initiator=True,
        local=I_ADDR,
        remote=R_ADDR,
    )
    res = IkeSa(
        make_config("aes128gcm16-prfsha256-ecp256", local_id="r.example"),
        is_initiator=False,
        local=R_ADDR,
        remote=I_ADDR,
    )
    ini.initiate(now=0.0)
    ((request, _),) = ini.datagrams_to_send(now=0.0)
    res.receive_datagram(request, I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    header = decode_message(reply).header
    assert header.spi_r == b"\x00" * 8
    (failed,) = [e for e in iter(res.next_event, None) if isinstance(e, IkeSaFailed)]
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert (failed.spi_i, failed.spi_r) == (header.spi_i, b"\x00" * 8)
    assert res.spi_r == b"\x00" * 8
