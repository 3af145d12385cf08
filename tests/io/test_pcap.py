"""pcap files of IKE datagrams and the Wireshark IKEv2 key table.

The headers are checked here byte by byte; when tshark is installed, it must dissect
every datagram as IKEv2 with no Malformed or expert error, and decrypt IKE_AUTH with
the key table pqike writes.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import shutil
import struct
import subprocess

import pytest

from pqike.constants import ExchangeType
from pqike.crypto.keys import IkeKeys
from pqike.handshake import make_config
from pqike.ike.endpoint import IkeEndpoint
from pqike.ike.events import IkeSaEstablished
from pqike.io.udp import UdpEndpoint
from pqike.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapWriter,
    ikev2_decryption_line,
    internet_checksum,
    udp_datagram,
)
from pqike.proposal import NegotiatedSuite, parse_proposals

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark is not installed (apt-get install -y tshark)"
)

CLASSICAL = "aes256gcm16-prfsha384-x25519"
HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


# --- headers -------------------------------------------------------------------------------


def pseudo_header_sum_ok(packet: bytes) -> bool:
    """Recompute the UDP checksum over the pseudo header: a correct one sums to zero."""
    if packet[0] >> 4 == 4:
        src, dst, udp = packet[12:16], packet[16:20], packet[20:]
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    else:
        src, dst, udp = packet[8:24], packet[24:40], packet[40:]
        pseudo = src + dst + struct.pack("!I3xB", len(udp), 17)
    return internet_checksum(pseudo + udp) == 0


def test_ipv4_udp_datagram_has_correct_lengths_and_checksums():
    payload = b"\x00\x00\x00\x00" + bytes(range(200))
    packet = udp_datagram(payload, ("192.0.2.1", 4500), ("192.0.2.2", 4500), ident=7)
    version_ihl, _, total, ident, frag, ttl, proto = struct.unpack("!BBHHHBB", packet[:10])
    assert (version_ihl, total, ident, frag, ttl, proto) == (0x45, len(packet), 7, 0x4000, 64, 17)
    assert internet_checksum(packet[:20]) == 0
    sport, dport, length, checksum = struct.unpack("!HHHH", packet[20:28])
    assert (sport, dport, length) == (4500, 4500, 8 + len(payload))
    assert checksum != 0 and pseudo_header_sum_ok(packet)
    assert packet[28:] == payload


def test_ipv6_udp_datagram_has_correct_lengths_and_checksum():
    payload = bytes(1201)  # odd length: the checksum pads with a zero byte
    packet = udp_datagram(payload, ("2001:db8::1", 500), ("2001:db8::2", 500))
    first, plen, nxt, hops = struct.unpack("!IHBB", packet[:8])
    assert (first >> 28, plen, nxt, hops) == (6, 8 + len(payload), 17, 64)
    assert ipaddress.ip_address(packet[8:24]) == ipaddress.ip_address("2001:db8::1")
    assert pseudo_header_sum_ok(packet)


def test_mixed_families_and_oversized_payloads_are_refused():
    with pytest.raises(ValueError):
        udp_datagram(b"x", ("192.0.2.1", 500), ("2001:db8::2", 500))
    with pytest.raises(ValueError):
        udp_datagram(bytes(65508), ("192.0.2.1", 500), ("192.0.2.2", 500))


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, LINKTYPE_ETHERNET])
def test_pcap_file_layout(linktype):
    out = io.BytesIO()
    writer = PcapWriter(out, linktype=linktype)
    writer.write_udp(b"abc", ("192.0.2.1", 500), ("192.0.2.2", 500), timestamp=1700000000.25)
    writer.write_udp(b"defg", ("2001:db8::1", 500), ("2001:db8::2", 500), timestamp=1700000001)
    data = out.getvalue()
    magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, linktype)
    sec, usec, caplen, length = struct.unpack("<IIII", data[24:40])
    extra = 14 if linktype == LINKTYPE_ETHERNET else 0
    assert (sec, usec, caplen, length) == (1700000000, 250000, extra + 31, extra + 31)
    if linktype == LINKTYPE_ETHERNET:
        assert data[40 + 12 : 40 + 14] == b"\x08\x00"
    second = 40 + caplen
    assert struct.unpack("<IIII", data[second : second + 16])[2] == extra + 52
    assert writer.packets == 2 and len(data) == second + 16 + extra + 52


def test_key_table_line_matches_wiresharks_columns():
    suite = NegotiatedSuite.from_proposal(parse_proposals("aes256gcm16-prfsha384-x25519")[0])
    keys = IkeKeys(b"d", b"", b"", bytes(36), b"\x01" * 36, b"p", b"q")
    line = ikev2_decryption_line(b"\xaa" * 8, b"\xbb" * 8, suite, keys)
    assert line == (
        f"{'aa' * 8},{'bb' * 8},{'00' * 36},{'01' * 36},"
        '"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"'
    )
    cbc = NegotiatedSuite.from_proposal(parse_proposals("aes128-sha256-ecp256")[0])
    keys = IkeKeys(b"d", b"\x02" * 32, b"\x03" * 32, bytes(16), bytes(16), b"p", b"q")
    fields = ikev2_decryption_line(b"\x01" * 8, b"\x02" * 8, cbc, keys).split(",")
    assert fields[4] == '"AES-CBC-128 [RFC3602]"'
    assert fields[7] == '"HMAC_SHA2_256_128 [RFC4868]"'


def test_a_cipher_wireshark_cannot_decrypt_becomes_a_comment():
    suite = NegotiatedSuite.from_proposal(parse_proposals("chacha20poly1305-prfsha256-x25519")[0])
    keys = IkeKeys(b"d", b"", b"", bytes(36), bytes(36), b"p", b"q")
    line = ikev2_decryption_line(b"\x01" * 8, b"\x02" * 8, suite, keys)
    assert line.startswith("# 0101010101010101,0202020202020202: Wireshark cannot decrypt")


# --- captures of real handshakes --------------------------------------------------------------


def capture_in_memory(proposal, *, ports=(500, 500), force_nat_t=True, ipv6=False):
    """A whole handshake between two endpoints in memory, written as a pcap."""
    a = ("2001:db8::1" if ipv6 else "192.0.2.1", ports[0])
    b = ("2001:db8::2" if ipv6 else "192.0.2.2", ports[1])
    ini = IkeEndpoint()
    res = IkeEndpoint(make_config(proposal, local_id="responder.pqike.example"))
    config = make_config(
        proposal,
        local_id="initiator.pqike.example",
        remote_id="responder.pqike.example",
        force_nat_t=force_nat_t,
    )
    sa = ini.initiate(config, b, local=a, now=0.0)
    out = io.BytesIO()
    writer = PcapWriter(out)
    now = 0.0
    for _ in range(20):
        moved = False
        for src, dst in ((ini, res), (res, ini)):
            for data, local, remote in src.datagrams_to_send(now=now):
                writer.write_udp(data, local, remote, timestamp=1700000000 + now)
                dst.receive_datagram(data, local, local=remote, now=now)
                moved = True
            now += 0.001
        if not moved:
            break
    assert sa.is_established
    keys = []
    while (item := ini.next_event()) is not None:
        if isinstance(item[1], IkeSaEstablished):
            e = item[1]
            keys.append(ikev2_decryption_line(e.spi_i, e.spi_r, e.suite, e.keys))
    return out.getvalue(), keys


def tshark_frames(tmp_path, pcap: bytes, *args: str, keys: list[str] = ()):
    """Per frame: (exchange type, FQDN identities, expert messages), from tshark.

    The key table goes into a fresh Wireshark profile as the ``ikev2_decryption_table``
    file, exactly as pqike writes it.
    """
    home = tmp_path / "home"
    (home / ".config" / "wireshark").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "wireshark" / "ikev2_decryption_table").write_text(
        "# written by pqike\n" + "".join(line + "\n" for line in keys)
    )
    path = tmp_path / "capture.pcap"
    path.write_bytes(pcap)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": "/usr/bin:/bin"}
    fields = ["frame.number", "isakmp.exchangetype", "isakmp.id.data.fqdn", "_ws.expert.message"]
    cmd = [TSHARK, "-r", str(path), *args, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True)
    verbose = subprocess.run(
        [TSHARK, "-r", str(path), *args, "-V"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split("|") for line in out.stdout.splitlines()]
    return [(r[1], r[2], r[3]) for r in rows], verbose


@needs_tshark
@pytest.mark.parametrize("proposal", [CLASSICAL, HYBRID])
def test_tshark_dissects_ports_500_and_4500_with_marker_cleanly(tmp_path, proposal):
    pcap, _ = capture_in_memory(proposal)
    frames, verbose = tshark_frames(tmp_path, pcap)
    assert "Malformed" not in verbose
    assert all(expert == "" for _, _, expert in frames)
    assert "User Datagram Protocol, Src Port: 4500, Dst Port: 4500" in verbose
    assert "Non-ESP Marker" in verbose
    exchanges = [int(x) for x, _, _ in frames]
    if proposal == HYBRID:
        # IKE_INTERMEDIATE request in two fragments, then its response.
        assert exchanges == [34, 34, 43, 43, 43, 35, 35]
    else:
        assert exchanges == [34, 34, 35, 35]


@needs_tshark
def test_tshark_dissects_ipv6_custom_ports_as_udp_encapsulated_ike(tmp_path):
    pcap, _ = capture_in_memory(HYBRID, ports=(15500, 15600), ipv6=True)
    frames, verbose = tshark_frames(tmp_path, pcap, "-d", "udp.port==15500,udpencap")
    assert "Malformed" not in verbose
    assert [int(x) for x, _, _ in frames] == [34, 34, 43, 43, 43, 35, 35]
    assert all(expert == "" for _, _, expert in frames)


@needs_tshark
def test_key_table_lets_wireshark_decrypt_ike_auth(tmp_path):
    pcap, keys = capture_in_memory(CLASSICAL)
    frames, verbose = tshark_frames(tmp_path, pcap, keys=keys)
    assert frames[2] == (
        str(int(ExchangeType.IKE_AUTH)),
        "initiator.pqike.example,responder.pqike.example",
        "",
    )
    assert frames[3] == ("35", "responder.pqike.example", "")
    assert "Malformed" not in verbose and "Integrity Checksum Data is incorrect" not in verbose


@needs_tshark
def test_with_additional_key_exchanges_the_final_keys_decrypt_ike_auth(tmp_path):
    """Wireshark holds one key set per SPI pair: the final one opens IKE_AUTH, while the
    IKE_INTERMEDIATE messages (earlier keys) fail its integrity check."""
    pcap, keys = capture_in_memory(HYBRID)
    frames, _ = tshark_frames(tmp_path, pcap, keys=keys)
    auth = [f for f in frames if f[0] == "35"]
    assert auth == [
        ("35", "initiator.pqike.example,responder.pqike.example", ""),
        ("35", "responder.pqike.example", ""),
    ]
    intermediate = [f for f in frames if f[0] == "43"]
    assert all("Integrity Checksum Data is incorrect" in f[2] for f in intermediate)


@needs_tshark
def test_capture_of_a_real_udp_handshake_dissects_cleanly(tmp_path):
    async def main():
        out = io.BytesIO()
        writer = PcapWriter(out)
        clock = iter(range(1700000000, 1800000000))

        def record(direction, data, src, dst):
            if direction == "sent":  # each side records what it sends: every datagram once
                writer.write_udp(data, src, dst, timestamp=next(clock))

        res = await UdpEndpoint.open(
            IkeEndpoint(make_config(HYBRID, local_id="responder.pqike.example")),
            ["127.0.0.1"],
            port=0,
            nat_t_port=0,
            on_datagram=record,
        )
        ini = await UdpEndpoint.open(
            IkeEndpoint(), ["127.0.0.1"], port=0, nat_t_port=0, on_datagram=record
        )
        try:
            sa = ini.initiate(
                make_config(HYBRID, local_id="initiator.pqike.example"), ("127.0.0.1", res.port)
            )
            assert await ini.watch(sa).wait(10)
        finally:
            await ini.close()
            await res.close()
        return out.getvalue(), res.port

    pcap, port = asyncio.run(main())
    frames, verbose = tshark_frames(tmp_path, pcap, "-d", f"udp.port=={port},udpencap")
    assert sorted(int(x) for x, _, _ in frames) == [34, 34, 35, 35, 43, 43, 43]
    assert "Malformed" not in verbose
    assert all(expert == "" for _, _, expert in frames)
