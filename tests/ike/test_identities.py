"""IKE_AUTH with PSK and every ID type the issue names (RFC 7296 3.5), IPv4 and IPv6."""

from __future__ import annotations

import pytest

from pqike.constants import IdType
from pqike.errors import ConfigurationError
from pqike.handshake import drive_pair, make_config
from pqike.ike.config import Identity
from pqike.ike.events import IkeSaEstablished
from pqike.ike.sa import IkeSa

IDS = [
    ("192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
    ("2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01")),
    ("alice.example", IdType.ID_FQDN, b"alice.example"),
    ("alice@example.org", IdType.ID_RFC822_ADDR, b"alice@example.org"),
    ("keyid:0a0b0c", IdType.ID_KEY_ID, b"\x0a\x0b\x0c"),
]


@pytest.mark.parametrize(("text", "id_type", "data"), IDS)
def test_identity_strings_follow_strongswan(text, id_type, data):
    assert Identity.parse(text) == Identity(id_type, data)


@pytest.mark.parametrize(("text", "id_type", "data"), IDS)
def test_each_id_type_authenticates_with_psk(text, id_type, data):
    ini = IkeSa(
        make_config(
            "aes256gcm16-prfsha384-x25519", local_id=text, remote_id="bob.example", psk=b"secret"
        ),
        is_initiator=True,
    )
    res = IkeSa(
        make_config(
            "aes256gcm16-prfsha384-x25519", local_id="bob.example", remote_id=text, psk=b"secret"
        ),
        is_initiator=False,
        local=("192.0.2.2", 500),
        remote=("192.0.2.1", 500),
    )
    result = drive_pair(ini, res)
    assert result.established
    est = next(e for e in result.responder_events if isinstance(e, IkeSaEstablished))
    assert est.remote_id == Identity(id_type, data)


def test_unexpected_peer_identity_is_authentication_failed():
    ini = IkeSa(
        make_config("aes256gcm16-prfsha384-x25519", local_id="mallory.example", psk=b"secret"),
        is_initiator=True,
    )
    res = IkeSa(
        make_config(
            "aes256gcm16-prfsha384-x25519",
            local_id="bob.example",
            remote_id="alice.example",
            psk=b"secret",
        ),
        is_initiator=False,
        local=("192.0.2.2", 500),
        remote=("192.0.2.1", 500),
    )
    result = drive_pair(ini, res)
    assert not result.established
    assert {f.notify for f in result.failures} == {24}


def test_ipv6_handshake_accounts_for_ipv6_headers():
    from pqike.handshake import run_handshake

    v4 = run_handshake(ipv6=False)
    v6 = run_handshake(ipv6=True)
    assert v6.established
    assert [d.udp_bytes for d in v6.trace.datagrams] == [d.udp_bytes for d in v4.trace.datagrams]
    assert all(
        d6.ip_bytes - d4.ip_bytes == 20
        for d4, d6 in zip(v4.trace.datagrams, v6.trace.datagrams, strict=True)
    )


def test_bad_keyid_is_a_configuration_error_naming_the_field():
    with pytest.raises(ConfigurationError) as exc:
        Identity.parse("keyid:zz")
    assert exc.value.field == "id"
