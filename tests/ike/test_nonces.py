"""RFC 7296 2.10: nonces are at least half the PRF's key size (and 16 bytes at least)."""

from __future__ import annotations

import pytest

from pqike.constants import NotifyType
from pqike.errors import ConfigurationError
from pqike.handshake import make_config
from pqike.ike import IkeSa
from pqike.ike.events import IkeSaFailed
from pqike.wire.codec import decode_message, encode_message
from pqike.wire.payloads import NoncePayload

SHA384 = "aes256gcm16-prfsha384-x25519"
I_ADDR = ("192.0.2.1", 500)
R_ADDR = ("192.0.2.2", 500)


def with_short_nonce(datagram: bytes) -> bytes:
    message = decode_message(datagram)
    payloads = [
        NoncePayload(b"\x01" * 16) if isinstance(p, NoncePayload) else p for p in message.payloads
    ]
    return encode_message(message.header, payloads)


def peers():
    ini = IkeSa(
        make_config(SHA384, local_id="i.example"), is_initiator=True, local=I_ADDR, remote=R_ADDR
    )
    res = IkeSa(
        make_config(SHA384, local_id="r.example"), is_initiator=False, local=R_ADDR, remote=I_ADDR
    )
    return ini, res


def test_a_short_ni_is_refused_with_invalid_syntax():
    ini, res = peers()
    ini.initiate(now=0.0)
    ((request, _),) = ini.datagrams_to_send(now=0.0)
    res.receive_datagram(with_short_nonce(request), I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    assert [n.notify_type for n in decode_message(reply).notifies()] == [NotifyType.INVALID_SYNTAX]
    failed = [e for e in iter(res.next_event, None) if isinstance(e, IkeSaFailed)]
    assert "RFC 7296 2.10" in failed[0].reason and res.is_closed


def test_a_short_nr_fails_the_initiator():
    ini, res = peers()
    ini.initiate(now=0.0)
    ((request, _),) = ini.datagrams_to_send(now=0.0)
    res.receive_datagram(request, I_ADDR, now=0.0)
    ((reply, _),) = res.datagrams_to_send(now=0.0)
    ini.receive_datagram(with_short_nonce(reply), R_ADDR, now=0.0)
    failed = [e for e in iter(ini.next_event, None) if isinstance(e, IkeSaFailed)]
    assert [f.notify for f in failed] == [NotifyType.INVALID_SYNTAX] and ini.is_closed


@pytest.mark.parametrize(("proposal", "size"), [(SHA384, 23), ("aes256gcm16-prfsha512-x25519", 31)])
def test_a_nonce_size_below_half_an_offered_prf_key_is_a_configuration_error(proposal, size):
    with pytest.raises(ConfigurationError, match="nonce_size"):
        make_config(proposal, local_id="i.example", nonce_size=size)
    make_config(proposal, local_id="i.example", nonce_size=size + 1)
