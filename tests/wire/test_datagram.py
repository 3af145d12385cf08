"""The non-ESP marker rule and IP/UDP parsing of ``pqike.wire.datagram``."""

import pytest

from pqike.constants import IKE_HEADER_LENGTH, IKE_PORT, NAT_T_PORT, NON_ESP_MARKER
from pqike.pcap import udp_datagram
from pqike.wire.datagram import (
    NAT_KEEPALIVE,
    PayloadKind,
    add_marker,
    classify,
    ike_message,
    ip_header_length,
    ip_overhead,
    marker_length,
    parse_ip_udp,
    strip_marker,
    strip_marker_if_present,
    uses_marker,
)

IKE = bytes(range(1, IKE_HEADER_LENGTH + 1))  # a non-zero SPIi, like any IKE header
ESP = b"\x00\x00\x10\x01" + bytes(40)  # SPI 0x1001


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        (IKE_PORT, IKE_PORT, False),
        (IKE_PORT, NAT_T_PORT, False),
        (NAT_T_PORT, IKE_PORT, False),
        (NAT_T_PORT, NAT_T_PORT, True),
        (15500, 15500, True),
    ],
)
def test_marker_whenever_neither_port_is_500(local, remote, expected):
    assert uses_marker(local, remote) is expected
    assert marker_length(local, remote) == (len(NON_ESP_MARKER) if expected else 0)
    sent = add_marker(IKE, local, remote)
    assert sent == (NON_ESP_MARKER + IKE if expected else IKE)
    assert strip_marker(sent, local, remote) == IKE
    assert classify(sent, local, remote) is PayloadKind.IKE


def test_esp_and_keepalives_on_marker_ports():
    assert classify(ESP, NAT_T_PORT, NAT_T_PORT) is PayloadKind.ESP
    assert strip_marker(ESP, NAT_T_PORT, NAT_T_PORT) is None
    assert classify(NAT_KEEPALIVE, NAT_T_PORT, NAT_T_PORT) is PayloadKind.NAT_KEEPALIVE
    assert strip_marker(NAT_KEEPALIVE, NAT_T_PORT, NAT_T_PORT) is None
    # Port 500 carries IKE only: no marker is looked for.
    assert classify(ESP, IKE_PORT, NAT_T_PORT) is PayloadKind.IKE


def test_ike_message_with_and_without_ports():
    marked = NON_ESP_MARKER + IKE
    assert ike_message(marked) == IKE
    assert ike_message(IKE) == IKE
    assert ike_message(marked, (NAT_T_PORT, NAT_T_PORT)) == IKE
    assert ike_message(IKE, (NAT_T_PORT, NAT_T_PORT)) is None
    assert ike_message(NAT_KEEPALIVE) is None
    assert ike_message(NON_ESP_MARKER + IKE[:-1]) is None
    assert strip_marker_if_present(marked) == IKE


def test_header_sizes():
    assert ip_header_length(False) == 20
    assert ip_header_length(True) == 40
    assert ip_overhead(False) == 28
    assert ip_overhead(True) == 48


@pytest.mark.parametrize(
    ("src", "dst"),
    [(("192.0.2.1", 500), ("192.0.2.2", 4500)), (("2001:db8::1", 4500), ("2001:db8::2", 500))],
)
def test_parse_ip_udp_reads_what_pcap_writes(src, dst):
    packet = udp_datagram(IKE, src, dst)
    udp = parse_ip_udp(packet)
    assert udp is not None
    assert (udp.src, udp.sport, udp.dst, udp.dport) == (*src, *dst)
    assert udp.payload == IKE
    assert udp.ipv6 == (":" in src[0])
    assert len(packet) == ip_overhead(udp.ipv6) + len(IKE)


def test_parse_ip_udp_rejects_other_packets():
    v4 = bytearray(udp_datagram(IKE, ("192.0.2.1", 500), ("192.0.2.2", 500)))
    assert parse_ip_udp(b"") is None
    assert parse_ip_udp(bytes(v4[:10])) is None
    later_fragment = bytearray(v4)
    later_fragment[7] = 1  # fragment offset 8 bytes
    assert parse_ip_udp(bytes(later_fragment)) is None
    tcp = bytearray(v4)
    tcp[9] = 6
    assert parse_ip_udp(bytes(tcp)) is None
    v6 = bytearray(udp_datagram(IKE, ("2001:db8::1", 500), ("2001:db8::2", 500)))
    v6[6] = 44  # a Fragment extension header
    assert parse_ip_udp(bytes(v6)) is None
