"""pqike.interop.peer without namespaces or daemons (no root needed).

The readers of strongSwan's side run on the reference run in tests/data/strongswan/
(two charons, hybrid x25519 + ML-KEM-768) and on log lines charon 6.0.1 wrote in
failing lab runs.
"""

from pathlib import Path

import pytest

from pqike.interop.lab import Algorithms, LabError, log_dumps, parse_list_sas
from pqike.interop.peer import (
    charon_errors,
    strongswan_child_keys,
    strongswan_ike_keys,
    strongswan_suite,
    write_pqike_config,
)
from pqike.io.config import parse_peer_config

DATA = Path(__file__).resolve().parents[1] / "data" / "strongswan"

LIST_SAS_RAW = (
    "list-sa event {conn {uniqueid=1 version=2 state=ESTABLISHED local-host=2001:db8::2 "
    "local-port=4500 local-id=right.pqike.test remote-host=2001:db8::1 remote-port=4500 "
    "remote-id=left.pqike.test initiator-spi=5dc8ed6169513617 "
    "responder-spi=ea79170f1432c335 encr-alg=AES_CBC encr-keysize=128 "
    "integ-alg=HMAC_SHA2_256_128 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 "
    "ake1=ML_KEM_768 established=0 rekey-time=13698 child-sas {child-1 {name=child "
    "uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP spi-in=01000000 "
    "spi-out=6ced1652 encr-alg=AES_CBC encr-keysize=128 integ-alg=HMAC_SHA2_256_128 "
    "bytes-in=0 packets-in=0 use-in=582 bytes-out=0 packets-out=0 use-out=582 "
    "rekey-time=3273 life-time=3960 install-time=0 local-ts=[2001:db8::2/128] "
    "remote-ts=[2001:db8::1/128]}}}}\n"
    "list-sas reply {}\n"
)


def test_list_sas_reads_as_the_proposal_pqike_reports():
    (sa,) = parse_list_sas(LIST_SAS_RAW)
    (child,) = sa.children

    assert strongswan_suite(sa.algorithms) == "aes128-sha256-prfsha256-x25519-ke1_mlkem768"
    assert strongswan_suite(child.algorithms, esp=True, raw=child.raw) == "aes128-sha256-noesn"


def test_suites_name_every_additional_round_in_order_and_esn_when_listed():
    algorithms = Algorithms(
        encr="AES_GCM_16",
        encr_keysize=256,
        prf="PRF_HMAC_SHA2_384",
        ke="CURVE_25519",
        additional_ke=((2, "ML_KEM_1024"), (1, "ML_KEM_768")),
    )
    assert strongswan_suite(algorithms) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
    esp = Algorithms(encr="CHACHA20_POLY1305")
    assert strongswan_suite(esp, esp=True, raw={"esn": "1"}) == "chacha20poly1305-esn"
    with pytest.raises(LabError, match="no proposal keyword known for strongSwan's CAMELLIA"):
        strongswan_suite(Algorithms(encr="CAMELLIA_CBC", encr_keysize=128))


def test_both_charons_of_the_reference_run_logged_the_same_final_keys():
    left, right = (DATA / "left.log").read_text(), (DATA / "right.log").read_text()

    keys = strongswan_ike_keys(left)

    assert keys == strongswan_ike_keys(right)
    # AES-GCM: SK_e with its 4-byte salt, no SK_a; SK_d and SK_p are PRF-sized (SHA-384).
    assert {name: len(value) // 2 for name, value in keys.items()} == {
        "sk_d": 48,
        "sk_ai": 0,
        "sk_ar": 0,
        "sk_ei": 36,
        "sk_er": 36,
        "sk_pi": 48,
        "sk_pr": 48,
    }
    # The final keys are those after the ML-KEM round (RFC 9370), not the first ones.
    first, final = log_dumps(left, "Sk_ei secret")
    assert keys["sk_ei"] == final.hex() != first.hex()
    child = strongswan_child_keys(left)
    assert child == strongswan_child_keys(right)
    assert (len(child["encr_i"]) // 2, child["integ_i"], child["integ_r"]) == (36, "", "")
    assert child["encr_i"] != child["encr_r"]


def test_a_clean_run_has_no_error_lines():
    for log in ("left.log", "right.log"):
        assert charon_errors((DATA / log).read_text()) == []


# Lines charon 6.0.1 wrote in lab runs that went wrong (wrong PSK, no common proposal),
# and benign ones from good runs, including hex dumps whose ASCII column reads "error".
FAILING = [
    "06[IKE] <conn|1> tried 2 shared keys for 'right.pqike.test' - 'left.pqike.test', "
    "but MAC mismatched",
    "06[ENC] <conn|1> generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]",
    "11[IKE] <conn|1> received AUTHENTICATION_FAILED notify error",
    "15[CFG] <1>   no acceptable KEY_EXCHANGE_METHOD found",
    "15[IKE] <1> received proposals unacceptable",
    "15[ENC] <1> generating IKE_SA_INIT response 0 [ N(NO_PROP) ]",
    "13[ENC] <conn|1> parsed IKE_SA_INIT response 0 [ N(INVAL_KE) ]",
    "09[IKE] <conn|1> retransmit 1 of request with message ID 2",
    "09[IKE] <conn|1> giving up after 3 retransmits",
]
BENIGN = [
    "10[IKE] <conn|1> received ESP_TFC_PADDING_NOT_SUPPORTED, not using ESPv3 TFC padding",
    "04[ENC] <1> generating IKE_SA_INIT response 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) "
    "CERTREQ N(FRAG_SUP) N(CHDLESS_SUP) N(IKE_INT_SUP) N(MULT_AUTH) ]",
    "05[IKE] <conn|1> authentication of 'left.pqike.test' with pre-shared key successful",
    "05[IKE] <conn|1> secret => 11 bytes @ 0x55b86868ec70",
    "05[IKE] <conn|1>    0: 65 72 72 6F 72 20 66 61 69 6C 65 64 00 00 00 00  error failed....",
]


@pytest.mark.parametrize("line", FAILING)
def test_each_failure_line_counts_as_an_error(line):
    stamped = f"2026-11-26 19:24:20.421297 {line}"
    assert charon_errors("\n".join([*BENIGN, stamped])) == [stamped]


def test_a_written_pqike_config_loads_and_matches_the_lab_charon(tmp_path):
    class FakeLab:  # the two methods write_pqike_config asks a Lab
        def peer_of(self, side):
            return {"left": "right", "right": "left"}[side]

        def address(self, side):
            return {"left": "2001:db8::1", "right": "2001:db8::2"}[side]

    path = write_pqike_config(
        tmp_path / "left.toml",
        FakeLab(),
        "left",
        ike_proposal="aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        esp_proposal="aes256-sha256",
        fragment_size=576,
        port=15500,
        nat_t_port=15501,
    )

    peer = parse_peer_config(path.read_text(), source=str(path))
    assert peer.local_addresses == ("2001:db8::1",)
    assert peer.remote == ("2001:db8::2", 15500)
    assert (peer.port, peer.nat_t_port) == (15500, 15501)
    assert str(peer.ike.local_id) == "left.pqike.test"
    assert str(peer.ike.remote_id) == "right.pqike.test"
    assert peer.ike.psk == b"pqike-interop-lab-psk"
    assert peer.ike.fragment_size == 576
    assert (peer.ike.retransmit_timeout, peer.ike.retransmit_tries) == (4.0, 3)
