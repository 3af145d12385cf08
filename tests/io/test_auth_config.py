"""The [auth] section of peer.toml: certificates, trusted CAs, PPK; errors name the file."""

from __future__ import annotations

import pytest

from pqike.errors import ConfigurationError
from pqike.io.config import load_peer_config
from pqike.pki import make_pki

BASE = '[peer]\nlocal = "127.0.0.1"\nlocal_id = "moon.pqike.test"\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    make_pki(d / "pki", ["moon.pqike.test"], key_type="ed25519")
    return d


def write(d, text):
    p = d / "peer.toml"
    p.write_text(BASE + text)
    p.chmod(0o600)  # it holds the PSK (and maybe a PPK): pqike refuses it readable by others
    return p


AUTH = (
    '[auth]\nkey = "pki/moon.pqike.test.key"\ncertificate = "pki/moon.pqike.test.pem"\n'
    'cacerts = ["pki/ca.pem"]\n'
)


def test_certificates_and_a_ppk_load_relative_to_the_file(pki):
    cfg = load_peer_config(
        write(pki, AUTH + 'ppk_hex = "0011"\nppk_id = "p1"\nppk_required = true\n')
    )
    ike = cfg.ike
    assert ike.credential is not None and len(ike.credential.chain) == 2
    assert ike.trust is not None and ike.psk == b""
    assert (ike.ppk, ike.ppk_id, ike.ppk_required) == (b"\x00\x11", b"p1", True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("pki/ca.pem", "pki/ca.key"), "certificate file .*ca.key: not an X.509 certificate"),
        (("pki/moon.pqike.test.key", "pki/none.key"), "key file .*none.key: cannot be read"),
        (("pki/moon.pqike.test.key", "pki/ca.pem"), "key file .*ca.pem: not an unencrypted"),
        (("pki/moon.pqike.test.key", "pki/ca.key"), "does not belong to the certificate"),
    ],
)
def test_bad_files_are_one_sentence_naming_the_file(pki, change, message):
    with pytest.raises(ConfigurationError, match=message) as err:
        load_peer_config(write(pki, AUTH.replace(*change)))
    assert str(err.value).startswith(str(pki / "peer.toml"))


def test_psk_is_still_required_without_trusted_cas(pki):
    text = AUTH.replace('cacerts = ["pki/ca.pem"]\n', "")
    with pytest.raises(ConfigurationError, match=r"\[peer\] psk: is required"):
        load_peer_config(write(pki, text))
    with pytest.raises(ConfigurationError, match=r"\[auth\] ppk_id: is required with a ppk"):
        load_peer_config(write(pki, AUTH + 'ppk = "secret"\n'))


def test_ppk_mode_rfc9867_and_more_ppks_load(pki):
    cfg = load_peer_config(
        write(
            pki,
            AUTH + 'ppk_hex = "0011"\nppk_id = "p1"\nppk_mode = "rfc9867"\n'
            'ppks_hex = { p2 = "2222", p3 = "0x3333" }\n',
        )
    )
    assert cfg.ike.ppk_mode == "rfc9867"
    assert cfg.ike.all_ppks == ((b"p1", b"\x00\x11"), (b"p2", b"\x22\x22"), (b"p3", b"\x33\x33"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ppk_mode = "rfc9999"\n', r"\[auth\] ppk_mode: must be one of rfc8784, rfc9867"),
        ('ppks_hex = { p2 = "zz" }\n', r"\[auth\] ppks_hex: 'p2' must map to non-empty hex"),
        ('ppks_hex = "p2"\n', r"\[auth\] ppks_hex: must be a table"),
    ],
)
def test_bad_ppk_keys_name_the_key(pki, text, message):
    base = AUTH + 'ppk_hex = "0011"\nppk_id = "p1"\n'
    with pytest.raises(ConfigurationError, match=message):
        load_peer_config(write(pki, base + text))
    with pytest.raises(ConfigurationError, match=r"\[auth\] ppks_hex: needs a first ppk"):
        load_peer_config(write(pki, AUTH + 'ppks_hex = { p2 = "22" }\n'))
