"""IKE in UDP: the non-ESP marker, and the IP and UDP headers around a datagram.

One copy of two things every layer that touches datagrams needs:

- **The non-ESP marker** (RFC 3948 2.2; RFC 7296 2.23). Ports that carry UDP-encapsulated
  ESP also carry IKE, so IKE messages there start with four zero bytes, which no ESP
  packet can (its SPI is never zero). Like strongSwan, pqike uses the marker on every
  IKE message whenever neither port is 500, IKE_SA_INIT included; on such a port pair a
  datagram without it is ESP, and a lone 0xFF byte is a NAT keepalive (RFC 3948 2.3).
  On a port pair that includes 500 nothing is prefixed.
- **IP and UDP header sizes**, and reading the UDP datagram out of a raw IPv4 or IPv6
  packet (a TUN device, a pcap record).

Only the standard library and :mod:`pqike.constants`: no codec, no crypto.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import StrEnum

from ..constants import IKE_HEADER_LENGTH, IKE_PORT, NON_ESP_MARKER

NAT_KEEPALIVE = b"\xff"
"""A NAT-keepalive packet: one 0xFF byte as the whole UDP payload (RFC 3948 2.3)."""

UDP_HEADER_LENGTH = 8
"""RFC 768."""
IPV4_HEADER_LENGTH = 20
"""An IPv4 header without options (RFC 791)."""
IPV6_HEADER_LENGTH = 40
"""The fixed IPv6 header (RFC 8200 3)."""
IPPROTO_UDP = 17
"""The UDP protocol number (IPv4 Protocol, IPv6 Next Header)."""

_IPV4_FRAGMENT_OFFSET = 0x1FFF


def ip_header_length(ipv6: bool) -> int:
    """Bytes of the IP header in front of our UDP datagrams (no options, no extensions)."""
    return IPV6_HEADER_LENGTH if ipv6 else IPV4_HEADER_LENGTH


def ip_overhead(ipv6: bool) -> int:
    """IP plus UDP header bytes in front of each UDP payload."""
    return ip_header_length(ipv6) + UDP_HEADER_LENGTH


# --- the non-ESP marker ------------------------------------------------------------------


def uses_marker(local_port: int, remote_port: int) -> bool:
    """True when IKE messages between these ports carry the non-ESP marker.

    That is when neither port is 500 (RFC 3948 2.2; strongSwan does the same for any
    such pair, not only 4500).
    """
    return local_port != IKE_PORT and remote_port != IKE_PORT


def marker_length(local_port: int, remote_port: int) -> int:
    """Bytes the marker adds to each IKE message between these ports (4 or 0)."""
    return len(NON_ESP_MARKER) if uses_marker(local_port, remote_port) else 0


def add_marker(message: bytes, local_port: int, remote_port: int) -> bytes:
    """The UDP payload that carries the IKE ``message`` between these ports."""
    return NON_ESP_MARKER + message if uses_marker(local_port, remote_port) else message


class PayloadKind(StrEnum):
    """What a UDP payload on an IKE port pair is."""

    IKE = "ike"
    ESP = "esp"
    """UDP-encapsulated ESP: no marker on a port pair that needs one (or anything else
    without it, such as a truncated datagram)."""
    NAT_KEEPALIVE = "nat-keepalive"


def classify(payload: bytes, local_port: int, remote_port: int) -> PayloadKind:
    """Tell IKE from ESP and NAT keepalives on a port pair (RFC 3948 2.2, 2.3).

    On a pair that includes port 500 everything is IKE.
    """
    if not uses_marker(local_port, remote_port):
        return PayloadKind.IKE
    if payload == NAT_KEEPALIVE:
        return PayloadKind.NAT_KEEPALIVE
    if payload[: len(NON_ESP_MARKER)] == NON_ESP_MARKER:
        return PayloadKind.IKE
    return PayloadKind.ESP


def strip_marker(payload: bytes, local_port: int, remote_port: int) -> bytes | None:
    """The IKE message in a UDP payload between these ports, without the marker;
    ``None`` when the payload is not IKE (ESP or a NAT keepalive, see :func:`classify`).
    """
    if not uses_marker(local_port, remote_port):
        return payload
    if payload[: len(NON_ESP_MARKER)] != NON_ESP_MARKER:
        return None
    return payload[len(NON_ESP_MARKER) :]


def strip_marker_if_present(payload: bytes) -> bytes:
    """The payload without a leading non-ESP marker, for when the ports are not known.

    An IKE header starts with the initiator's SPI, which is never zero (RFC 7296 3.1),
    so four zero bytes in front can only be the marker.
    """
    if payload[: len(NON_ESP_MARKER)] == NON_ESP_MARKER:
        return payload[len(NON_ESP_MARKER) :]
    return payload


def ike_message(payload: bytes, ports: tuple[int, int] | None = None) -> bytes | None:
    """The IKE message a UDP payload carries, or ``None`` for ESP, a NAT keepalive or
    anything shorter than an IKE header.

    ``ports`` is (local, remote) in either order; without it the marker is recognised by
    its content (:func:`strip_marker_if_present`).
    """
    if ports is None:
        data: bytes | None = strip_marker_if_present(payload)
    else:
        data = strip_marker(payload, *ports)
    if data is None or len(data) < IKE_HEADER_LENGTH:
        return None
    return data


# --- raw IP packets -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """The UDP datagram of one IP packet."""

    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    """The UDP payload, exactly as sent (a non-ESP marker included)."""
    ipv6: bool


def parse_ip_udp(packet: bytes) -> UdpPacket | None:
    """Read the UDP datagram out of a raw IPv4 or IPv6 packet (from its IP header on).

    ``None`` for anything else: other protocols, truncated packets, IPv4 fragments after
    the first, IPv6 packets with extension headers. IKE fragments itself (RFC 7383) and
    pqike's labs never send IP fragments, so nothing is reassembled.
    """
    if not packet:
        return None
    if packet[0] >> 4 == 6:
        if len(packet) < IPV6_HEADER_LENGTH or packet[6] != IPPROTO_UDP:
            return None
        (payload_length,) = struct.unpack_from("!H", packet, 4)
        src, dst = packet[8:24], packet[24:40]
        udp = packet[IPV6_HEADER_LENGTH : IPV6_HEADER_LENGTH + payload_length]
        ipv6 = True
    else:
        if len(packet) < IPV4_HEADER_LENGTH or packet[9] != IPPROTO_UDP:
            return None
        (total_length,) = struct.unpack_from("!H", packet, 2)
        (flags_offset,) = struct.unpack_from("!H", packet, 6)
        if flags_offset & _IPV4_FRAGMENT_OFFSET:
            return None
        ihl = (packet[0] & 0x0F) * 4  # Internet Header Length, in 32-bit words
        src, dst = packet[12:16], packet[16:20]
        udp = packet[ihl:total_length]
        ipv6 = False
    if len(udp) < UDP_HEADER_LENGTH:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp)
    return UdpPacket(
        str(ipaddress.ip_address(src)),
        sport,
        str(ipaddress.ip_address(dst)),
        dport,
        bytes(udp[UDP_HEADER_LENGTH:length]),
        ipv6,
    )


__all__ = [
    "IPPROTO_UDP",
    "IPV4_HEADER_LENGTH",
    "IPV6_HEADER_LENGTH",
    "NAT_KEEPALIVE",
    "UDP_HEADER_LENGTH",
    "PayloadKind",
    "UdpPacket",
    "add_marker",
    "classify",
    "ike_message",
    "ip_header_length",
    "ip_overhead",
    "marker_length",
    "parse_ip_udp",
    "strip_marker",
    "strip_marker_if_present",
    "uses_marker",
]
