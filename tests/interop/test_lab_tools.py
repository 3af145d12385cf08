"""The lab's parsers and templates, without namespaces or daemons (no root needed)."""

import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqike.interop.lab import (
    Algorithms,
    Datagram,
    LabError,
    StrongSwanConfig,
    datagram_sequence,
    log_dumps,
    parse_list_sas,
    parse_vici_raw,
    read_pcap,
    render_strongswan_conf,
    render_swanctl_conf,
)

# Captured from the lab: swanctl --list-sas --raw on the initiator after
# aes256gcm16-prfsha384-x25519-ke1_mlkem768 (load-tester's fake kernel SPIs).
LIST_SAS_RAW = (
    "list-sa event {conn {uniqueid=1 version=2 state=ESTABLISHED local-host=192.0.2.1 "
    "local-port=4500 local-id=left.pqike.test remote-host=192.0.2.2 remote-port=4500 "
    "remote-id=right.pqike.test initiator=yes initiator-spi=2cf7a9b59d93e7e9 "
    "responder-spi=3e3bee47fbc39208 encr-alg=AES_GCM_16 encr-keysize=256 "
    "prf-alg=PRF_HMAC_SHA2_384 dh-group=CURVE_25519 ake1=ML_KEM_768 established=0 "
    "rekey-time=13698 child-sas {child-1 {name=child uniqueid=1 reqid=1 state=INSTALLED "
    "mode=TUNNEL protocol=ESP spi-in=01000000 spi-out=01000000 encr-alg=AES_GCM_16 "
    "encr-keysize=256 bytes-in=0 packets-in=0 use-in=582 bytes-out=0 packets-out=0 "
    "use-out=582 rekey-time=3273 life-time=3960 install-time=0 local-ts=[192.0.2.1/32] "
    "remote-ts=[192.0.2.2/32]}}}}\n"
    "list-sas reply {}\n"
)

DATA = Path(__file__).resolve().parents[1] / "data" / "strongswan"


def test_list_sas_gives_the_negotiated_hybrid_key_exchange():
    (sa,) = parse_list_sas(LIST_SAS_RAW)

    assert sa.name == "conn"
    assert sa.established
    assert sa.initiator
    assert (sa.local_host, sa.local_port, sa.remote_host, sa.remote_port) == (
        "192.0.2.1",
        4500,
        "192.0.2.2",
        4500,
    )
    assert (sa.spi_i, sa.spi_r) == ("2cf7a9b59d93e7e9", "3e3bee47fbc39208")
    assert sa.algorithms == Algorithms(
        encr="AES_GCM_16",
        encr_keysize=256,
        prf="PRF_HMAC_SHA2_384",
        ke="CURVE_25519",
        additional_ke=((1, "ML_KEM_768"),),
    )
    assert sa.algorithms.key_exchanges == ("CURVE_25519", "ML_KEM_768")
    (child,) = sa.children
    assert (child.name, child.state, child.mode, child.protocol) == (
        "child",
        "INSTALLED",
        "TUNNEL",
        "ESP",
    )
    assert child.raw["local-ts"] == ["192.0.2.1/32"]
    assert child.algorithms.key_exchanges == ()


def test_vici_raw_values_may_contain_spaces_and_upper_case_equals():
    ((label, body),) = parse_vici_raw(
        "list-sa event {x {remote-id=CN=moon, O=strongSwan state=CONNECTING a=[] b {}}}"
    )

    assert label == "list-sa event"
    assert body == {
        "x": {"remote-id": "CN=moon, O=strongSwan", "state": "CONNECTING", "a": [], "b": {}}
    }


def test_a_truncated_vici_message_is_a_lab_error():
    with pytest.raises(LabError):
        parse_vici_raw("list-sa event {conn {state=ESTABLISHED")


def test_swanctl_conf_carries_the_experiment_settings():
    config = StrongSwanConfig(
        ike_proposal="aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        esp_proposal="aes256gcm16",
        local_addr="2001:db8::1",
        remote_addr="2001:db8::2",
        local_id="left.pqike.test",
        remote_id="right.pqike.test",
        port=15500,
        psk='pa"ss',
    )

    text = render_swanctl_conf(config)

    assert "proposals = aes256gcm16-prfsha384-x25519-ke1_mlkem768" in text
    assert "esp_proposals = aes256gcm16" in text
    assert "local_addrs = 2001:db8::1" in text
    assert "remote_addrs = 2001:db8::2" in text
    assert "local_port = 15500" in text
    assert "remote_port = 15500" in text  # the peer is configured alike
    assert 'secret = "pa\\"ss"' in text
    assert "local_ts = dynamic" in text


def test_strongswan_conf_loads_exactly_one_kernel_ipsec_backend(tmp_path):
    fake = render_strongswan_conf(
        StrongSwanConfig(), vici_socket=tmp_path / "v", log_path=tmp_path / "l"
    )
    tun = render_strongswan_conf(
        StrongSwanConfig(kernel="libipsec"), vici_socket=tmp_path / "v", log_path=tmp_path / "l"
    )

    load_fake = next(line for line in fake.splitlines() if "load =" in line).split()
    load_tun = next(line for line in tun.splitlines() if "load =" in line).split()
    assert "load-tester" in load_fake and "kernel-libipsec" not in load_fake
    assert "kernel-libipsec" in load_tun and "load-tester" not in load_tun
    assert "fake_kernel = yes" in fake
    assert f"socket = unix://{tmp_path / 'v'}" in fake
    assert "ike = 4" in fake and "chd = 4" in fake and "time_precision = us" in fake


def test_an_unknown_kernel_backend_is_refused(tmp_path):
    with pytest.raises(LabError):
        render_strongswan_conf(
            StrongSwanConfig(kernel="xfrm"), vici_socket=tmp_path / "v", log_path=tmp_path / "l"
        )


def _udp4_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst) + udp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def _udp6_frame(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, src, dst) + udp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip


def _ike_header(exchange: int, flags: int, message_id: int, next_payload: int, body: bytes):
    length = 28 + len(body)
    spis = bytes(range(1, 9)) + bytes(8)
    return (
        spis
        + struct.pack("!BBBBII", next_payload, 0x20, exchange, flags, message_id, length)
        + body
    )


def test_pcap_reader_finds_ike_datagrams_over_ipv4_and_ipv6(tmp_path):
    sa_init = _ike_header(34, 0x08, 0, 33, b"")
    # An IKE_INTERMEDIATE fragment 1 of 2 (SKF, RFC 7383) with the non-ESP marker.
    skf = struct.pack("!BBHHH", 34, 0, 8, 1, 2)
    fragment = b"\0\0\0\0" + _ike_header(43, 0x20, 1, 53, skf)
    frames = [
        _udp4_frame(bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), 500, 500, sa_init),
        _udp6_frame(
            bytes.fromhex("20010db8000000000000000000000002"),
            bytes.fromhex("20010db8000000000000000000000001"),
            4500,
            4500,
            fragment,
        ),
    ]
    pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for n, frame in enumerate(frames):
        pcap += struct.pack("<IIII", 100 + n, 250000, len(frame), len(frame)) + frame
    (tmp_path / "c.pcap").write_bytes(pcap)

    first, second = read_pcap(tmp_path / "c.pcap")

    assert (first.src, first.sport, first.dst, first.dport) == ("192.0.2.1", 500, "192.0.2.2", 500)
    assert first.time == pytest.approx(100.25)
    assert first.exchange == "IKE_SA_INIT"
    assert first.from_original_initiator and not first.is_response
    assert not first.has_non_esp_marker
    assert first.ike_message == sa_init
    assert (second.src, second.dst) == ("2001:db8::2", "2001:db8::1")
    assert second.has_non_esp_marker
    assert second.ike_message == fragment[4:]
    assert second.exchange == "IKE_INTERMEDIATE"
    assert second.is_response and not second.from_original_initiator
    assert second.message_id == 1
    assert second.fragment == (1, 2)
    assert datagram_sequence([first, second], "192.0.2.1") == f"s{len(sa_init)} r{len(fragment)}"


def test_esp_on_the_nat_t_port_is_not_an_ike_message():
    esp = Datagram(0.0, "192.0.2.1", 4500, "192.0.2.2", 4500, b"\x01\x00\x00\x00" + bytes(40))

    assert not esp.has_non_esp_marker
    assert esp.ike_message is None
    assert esp.exchange is None


def test_reference_capture_files_are_whole_ike_messages():
    files = sorted(DATA.glob("*.hex"))
    assert [f.name for f in files] == [
        "01-i-IKE_SA_INIT.hex",
        "02-r-IKE_SA_INIT.hex",
        "03-i-IKE_INTERMEDIATE-frag1of2.hex",
        "04-i-IKE_INTERMEDIATE-frag2of2.hex",
        "05-r-IKE_INTERMEDIATE.hex",
        "06-i-IKE_AUTH.hex",
        "07-r-IKE_AUTH.hex",
    ]
    ports = {"IKE_SA_INIT": 500}
    spis = []
    for f in files:
        payload = bytes.fromhex(f.read_text())
        port = ports.get(f.name.split("-")[2].removesuffix(".hex"), 4500)
        d = Datagram(0.0, "192.0.2.1", port, "192.0.2.2", port, payload)
        message = d.ike_message
        assert message is not None
        # Port 500 carries no marker, port 4500 always does (RFC 3948 2.2).
        assert d.has_non_esp_marker == (port == 4500)
        assert struct.unpack_from("!I", message, 24)[0] == len(message)
        assert message[17] == 0x20  # IKEv2
        assert d.from_original_initiator == (f.name[3] == "i")
        assert d.is_response == (f.name[3] == "r")
        spis.append((message[:8], message[8:16]))
    # One IKE SA: SPIr is zero only in the first IKE_SA_INIT request (RFC 7296 3.1).
    assert spis[0][1] == bytes(8)
    assert len({spi_i for spi_i, _ in spis}) == 1
    assert len({spi_r for _, spi_r in spis[1:]}) == 1


def _open_sk(message: bytes, sk_e: bytes) -> bytes:
    """Decrypt an unfragmented SK payload right after the IKE header (RFC 5282)."""
    sk_length = struct.unpack_from("!H", message, 30)[0]
    iv, sealed = message[32:40], message[40 : 28 + sk_length]
    plain = AESGCM(sk_e[:32]).decrypt(sk_e[32:] + iv, sealed, message[:32])
    return plain[: -1 - plain[-1]]  # drop padding and Pad Length


def test_reference_logs_hold_the_keys_that_protect_the_reference_datagrams():
    log = (DATA / "left.log").read_text()
    sk_er = log_dumps(log, "Sk_er secret")
    # Once after IKE_SA_INIT, once after the ML-KEM-768 IKE_INTERMEDIATE (RFC 9370).
    assert [len(k) for k in sk_er] == [36, 36]
    assert log_dumps(log, "nonces")[0] == log_dumps(log, "nonces")[1]

    intermediate = bytes.fromhex((DATA / "05-r-IKE_INTERMEDIATE.hex").read_text())[4:]
    ke = _open_sk(intermediate, sk_er[0])
    assert struct.unpack_from("!HH", ke, 2) == (8 + 1088, 36)  # KEr: ML-KEM-768 ciphertext

    auth = bytes.fromhex((DATA / "07-r-IKE_AUTH.hex").read_text())[4:]
    idr = _open_sk(auth, sk_er[1])
    idr_length = struct.unpack_from("!H", idr, 2)[0]
    assert idr[4] == 2  # ID_FQDN
    assert idr[8:idr_length] == b"right.pqike.test"


def test_certificate_auth_needs_libipsec_and_names_the_files():
    """load-tester brings an RSA key and on-demand certificates of its own, which charon
    would sign with; pubkey auth is refused with it."""
    from pqike.interop.lab import LabError, StrongSwanConfig, render_swanctl_conf

    files = dict(auth="pubkey", cert="/x/ee.pem", key="/x/ee.key", cacert="/x/ca.pem")
    with pytest.raises(LabError, match="libipsec"):
        render_swanctl_conf(StrongSwanConfig(**files))
    text = render_swanctl_conf(
        StrongSwanConfig(
            **files,
            kernel="libipsec",
            intermediates=("/x/i1.pem",),
            send_cert="always",
            peer_cert="/x/peer.pem",
        )
    )
    assert "certs = /x/ee.pem" in text and "cacerts = /x/ca.pem" in text
    assert "certs = /x/peer.pem" in text and "send_cert = always" in text
    assert "cacert = /x/i1.pem" in text and "/x/ee.key" not in text
