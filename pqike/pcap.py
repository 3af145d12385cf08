"""Artefacts for Wireshark: a pcap writer for IKE datagrams and the IKEv2 key table.

``PcapWriter`` writes classic libpcap files (not pcapng) with each UDP payload wrapped
in a real IPv4 or IPv6 header and a UDP header with correct lengths and checksums, so
Wireshark and tshark dissect them as they would a capture from the wire: UDP port 500
as ISAKMP, port 4500 with the non-ESP marker as UDP-encapsulated IKE. Other ports need
"Decode As" (``tshark -d udp.port==15500,udpencap`` when the marker is used, which pqike
and strongSwan do whenever neither port is 500).

``ikev2_decryption_line`` formats one record of Wireshark's IKEv2 decryption table
(the ``ikev2_decryption_table`` UAT file in a Wireshark profile, or
``tshark -o "uat:ikev2_decryption_table:<record>"``) from an ``IkeSaEstablished`` event.

``read_pcap`` reads a classic pcap back into UDP datagrams. Nothing else here does IO
beyond writing to the file object it is given.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .constants import EncrTransform, IntegTransform
from .crypto.keys import IkeKeys
from .proposal import NegotiatedSuite
from .wire.datagram import IPPROTO_UDP, IPV4_HEADER_LENGTH, UDP_HEADER_LENGTH, parse_ip_udp

Address = tuple[str, int]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
"""Raw IP: each packet starts with its IPv4 or IPv6 header."""

_PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_ETHERTYPE = {4: 0x0800, 6: 0x86DD}
# Locally administered MAC addresses (the 0x02 bit): the frames never touched a wire.
_MAC_SRC = bytes.fromhex("020000000001")
_MAC_DST = bytes.fromhex("020000000002")
_MAX_IP_LENGTH = 65535
"""IPv4 Total Length and IPv6 Payload Length are 16-bit fields."""
_MAX_UDP_PAYLOAD = {
    4: _MAX_IP_LENGTH - IPV4_HEADER_LENGTH - UDP_HEADER_LENGTH,
    6: _MAX_IP_LENGTH - UDP_HEADER_LENGTH,
}


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(payload: bytes, src: Address, dst: Address, *, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet carrying ``payload`` in UDP from ``src`` to ``dst``.

    Both addresses must be of one family. The UDP checksum is always filled in
    (mandatory over IPv6, RFC 8200 8.1; and 0 becomes 0xFFFF, RFC 768). ``ident`` is
    the IPv4 Identification field.
    """
    a = ipaddress.ip_address(src[0])
    b = ipaddress.ip_address(dst[0])
    if a.version != b.version:
        raise ValueError(f"{src[0]} and {dst[0]} are not of one address family")
    if len(payload) > _MAX_UDP_PAYLOAD[a.version]:
        raise ValueError(f"a {len(payload)}-byte UDP payload does not fit in one IP packet")
    udp_len = UDP_HEADER_LENGTH + len(payload)
    if a.version == 4:
        pseudo = a.packed + b.packed + struct.pack("!BBH", 0, IPPROTO_UDP, udp_len)
    else:
        pseudo = a.packed + b.packed + struct.pack("!I3xB", udp_len, IPPROTO_UDP)
    udp_header = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
    checksum = internet_checksum(pseudo + udp_header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", src[1], dst[1], udp_len, checksum) + payload
    if a.version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,  # version 4, 5 words of header
            0,
            IPV4_HEADER_LENGTH + udp_len,
            ident & 0xFFFF,
            0x4000,  # Don't Fragment: IKE fragments itself (RFC 7383)
            64,
            IPPROTO_UDP,
            0,
            a.packed,
            b.packed,
        )
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        return header + udp
    header = struct.pack("!IHBB16s16s", 6 << 28, udp_len, IPPROTO_UDP, 64, a.packed, b.packed)
    return header + udp


class PcapWriter:
    """Writes UDP datagrams into a classic pcap stream, one record per datagram.

    The file header is written at once; each ``write_udp`` appends one packet. The
    caller owns ``file`` (open it in binary mode, close it when done).
    """

    def __init__(
        self, file: BinaryIO, *, linktype: int = LINKTYPE_RAW, snaplen: int = 262144
    ) -> None:
        if linktype not in (LINKTYPE_RAW, LINKTYPE_ETHERNET):
            raise ValueError(f"link type {linktype} is not supported (use 1 or 101)")
        self._file = file
        self.linktype = linktype
        self.packets = 0
        file.write(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype))

    def write_udp(self, payload: bytes, src: Address, dst: Address, *, timestamp: float) -> None:
        """Append the UDP datagram ``payload`` from ``src`` to ``dst`` seen at ``timestamp``
        (seconds since the epoch)."""
        packet = udp_datagram(payload, src, dst, ident=self.packets + 1)
        if self.linktype == LINKTYPE_ETHERNET:
            version = 4 if packet[0] >> 4 == 4 else 6
            packet = _MAC_DST + _MAC_SRC + struct.pack("!H", _ETHERTYPE[version]) + packet
        micros = round(timestamp * 1_000_000)
        seconds, micros = divmod(micros, 1_000_000)
        self._file.write(struct.pack("<IIII", seconds, micros, len(packet), len(packet)))
        self._file.write(packet)
        self.packets += 1

    def flush(self) -> None:
        self._file.flush()


# --- reading ---------------------------------------------------------------------------


class CaptureError(ValueError):
    """A capture cannot be read; the message is one sentence naming the file."""


@dataclass(frozen=True)
class CapturedDatagram:
    """One UDP datagram of a capture: when, from and to where, and its payload as sent
    (a non-ESP marker included)."""

    index: int
    """Its frame number in the capture, from 1 (as Wireshark counts)."""
    time: float
    src: Address
    dst: Address
    payload: bytes


_PCAP_FORMATS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


def read_pcap(path: str | os.PathLike[str]) -> list[CapturedDatagram]:
    """The UDP datagrams of a classic pcap file (IPv4 and IPv6; Ethernet, raw IP and
    Linux cooked link types), in capture order.

    Raises ``CaptureError`` with one sentence for a file that is missing, is not a
    classic pcap (pcapng included), uses another link type, or ends inside a record.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read capture {name}: {exc.strerror}") from None
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise CaptureError(
            f"{name} is a pcapng file; convert it with: editcap -F pcap {name} out.pcap"
        )
    if len(data) < 24 or data[:4] not in _PCAP_FORMATS:
        raise CaptureError(f"{name} is not a pcap capture (no pcap file header)")
    endian, frac = _PCAP_FORMATS[data[:4]]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW, 12, 113, 276):
        raise CaptureError(f"{name} has link type {linktype}, which pqike cannot read")
    pos, out, frame_no = 24, [], 0
    while pos < len(data):
        frame_no += 1
        if pos + 16 > len(data):
            raise CaptureError(f"{name} is truncated: frame {frame_no} has an incomplete header")
        sec, sub, caplen, _ = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        if pos + caplen > len(data):
            raise CaptureError(
                f"{name} is truncated: frame {frame_no} announces {caplen} bytes, "
                f"{len(data) - pos} remain"
            )
        frame = data[pos : pos + caplen]
        pos += caplen
        packet = _udp_of(frame, linktype)
        if packet is not None:
            out.append(
                CapturedDatagram(
                    frame_no,
                    sec + sub * frac,
                    (packet.src, packet.sport),
                    (packet.dst, packet.dport),
                    packet.payload,
                )
            )
    return out


def _udp_of(frame: bytes, linktype: int):
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        off, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        while ethertype == 0x8100 and len(frame) >= off + 4:  # VLAN tag
            ethertype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
        if ethertype not in (0x0800, 0x86DD):
            return None
    elif linktype == 113:  # Linux cooked v1
        off = 16
    elif linktype == 276:  # Linux cooked v2
        off = 20
    else:  # raw IP
        off = 0
    return parse_ip_udp(frame[off:])


# --- Wireshark's IKEv2 decryption table ---------------------------------------------------

# The strings of Wireshark's vs_ikev2_encr_algs / vs_ikev2_auth_algs (packet-isakmp.c),
# which its UAT file stores verbatim; checked against tshark 4.0.
_ENCR_NAMES: dict[tuple[int, int], str] = {}
for _bits in (128, 192, 256):
    _ENCR_NAMES[(EncrTransform.AES_CBC, _bits)] = f"AES-CBC-{_bits} [RFC3602]"
    _ENCR_NAMES[(EncrTransform.AES_CTR, _bits)] = f"AES-CTR-{_bits} [RFC5930]"
    for _kind, _icv in (("GCM", (8, 12, 16)), ("CCM", (8, 12, 16))):
        for _octets in _icv:
            _ENCR_NAMES[(getattr(EncrTransform, f"AES_{_kind}_{_octets}"), _bits)] = (
                f"AES-{_kind}-{_bits} with {_octets} octet ICV [RFC5282]"
            )
_ENCR_NAMES[(EncrTransform.TRIPLE_DES, 192)] = "3DES [RFC2451]"
_ENCR_NAMES[(EncrTransform.NULL, 0)] = "NULL [RFC2410]"

_INTEG_NAMES: dict[int, str] = {
    IntegTransform.NONE: "NONE [RFC4306]",
    IntegTransform.HMAC_MD5_96: "HMAC_MD5_96 [RFC2403]",
    IntegTransform.HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegTransform.HMAC_MD5_128: "HMAC_MD5_128 [RFC4595]",
    IntegTransform.HMAC_SHA1_160: "HMAC_SHA1_160 [RFC4595]",
    IntegTransform.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegTransform.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegTransform.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}


def wireshark_encr_name(suite: NegotiatedSuite) -> str | None:
    """Wireshark's name for the suite's IKE cipher, or ``None`` if it cannot decrypt it
    (ChaCha20-Poly1305 among others, in Wireshark 4.0)."""
    bits = suite.key_bits
    if suite.encr == EncrTransform.TRIPLE_DES:
        bits = 192
    elif suite.encr == EncrTransform.NULL:
        bits = 0
    if bits is None:
        return None
    return _ENCR_NAMES.get((suite.encr, bits))


def ikev2_decryption_line(spi_i: bytes, spi_r: bytes, suite: NegotiatedSuite, keys: IkeKeys) -> str:
    """One record of Wireshark's ``ikev2_decryption_table``:
    SPIi, SPIr, SK_ei, SK_er, encryption algorithm, SK_ai, SK_ar, integrity algorithm.

    Byte fields are bare hex, algorithm names quoted. Wireshark keeps one record per
    SPI pair, so with RFC 9370 additional key exchanges only one key set can decrypt:
    pass the final keys (``IkeSaEstablished.keys``), which protect IKE_AUTH and later
    exchanges; the IKE_INTERMEDIATE messages, protected by earlier keys, stay opaque.
    A suite Wireshark cannot decrypt gives a ``#`` comment line instead.
    """
    encr = wireshark_encr_name(suite)
    integ = _INTEG_NAMES.get(suite.integ)
    if encr is None or integ is None:
        return (
            f"# {spi_i.hex()},{spi_r.hex()}: Wireshark cannot decrypt "
            f"{suite.describe()} (no name for its cipher or integrity algorithm)"
        )
    return ",".join(
        [
            spi_i.hex(),
            spi_r.hex(),
            keys.sk_ei.hex(),
            keys.sk_er.hex(),
            f'"{encr}"',
            keys.sk_ai.hex(),
            keys.sk_ar.hex(),
            f'"{integ}"',
        ]
    )


__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "CaptureError",
    "CapturedDatagram",
    "PcapWriter",
    "ikev2_decryption_line",
    "internet_checksum",
    "read_pcap",
    "udp_datagram",
    "wireshark_encr_name",
]
