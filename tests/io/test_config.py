"""The peer TOML file: defaults, the example file, and one clear error per bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqike.constants import IdType, TransformType
from pqike.crypto.kex import STANDARD_METHODS, KeyExchangeRegistry, OpenSslBackend
from pqike.errors import ConfigurationError
from pqike.io.config import load_peer_config, parse_peer_config

EXAMPLE = Path(__file__).parents[2] / "interop" / "pqike-peer.example.toml"

MINIMAL = """
[peer]
local = "127.0.0.1"
local_id = "initiator.pqike.example"
psk = "pqike-demo-psk"
"""


def with_keys(section: str, *lines: str, base: str = MINIMAL) -> str:
    """``base`` with ``lines`` added to ``section`` (created at the end if absent)."""
    if f"[{section}]" in base:
        return base.replace(f"[{section}]\n", f"[{section}]\n" + "\n".join(lines) + "\n", 1)
    return base + f"\n[{section}]\n" + "\n".join(lines) + "\n"


def error_of(text: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        parse_peer_config(text, source="peer.toml")
    return info.value


def test_a_minimal_file_gets_strongswan_like_defaults():
    peer = parse_peer_config(MINIMAL)
    assert peer.local_addresses == ("127.0.0.1",)
    assert (peer.port, peer.nat_t_port, peer.remote_address) == (500, 4500, None)
    ike = peer.ike
    assert ike.psk == b"pqike-demo-psk"
    assert ike.local_id.id_type == IdType.ID_FQDN and ike.remote_id is None
    assert (ike.fragmentation, ike.fragment_size, ike.transport_mode) == (True, 1280, False)
    assert (ike.retransmit_timeout, ike.retransmit_base, ike.retransmit_tries) == (4.0, 1.8, 5)
    assert [str(ts) for ts in ike.local_ts] == [
        "0.0.0.0-255.255.255.255",
        "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]


def test_the_documented_example_file_loads():
    # A checkout leaves it 0644; it holds only the demo PSK.
    peer = load_peer_config(EXAMPLE, allow_insecure_permissions=True)
    assert peer.remote == ("127.0.0.2", 500)
    assert peer.local_for("127.0.0.2") == "127.0.0.1"
    types = {t.type for t in peer.ike.ike_proposals[0].transforms}
    assert TransformType.ADDKE1 in types


def test_every_field_is_read():
    text = """
[peer]
local = ["127.0.0.1", "::1"]
port = 15500
nat_t_port = 15501
remote = "::1"
remote_port = 15600
local_id = "198.51.100.1"
remote_id = "keyid:0102"
psk_hex = "0x00:01:ff"
[ike]
proposals = "aes128gcm16-prfsha256-ecp256, aes256gcm16-prfsha384-x25519-ke1_mlkem768"
fragmentation = false
fragment_size = 1400
force_nat_t = true
[esp]
proposals = "aes256-sha256-esn"
mode = "transport"
local_ts = ["10.1.0.0/16"]
remote_ts = "10.2.0.0/24"
[retransmit]
timeout = 0.5
base = 1
tries = 2
[responder]
max_half_open = 10
max_half_open_per_peer = 3
cookie_threshold = 5
require_cookie = true
half_open_timeout = 5
closed_linger = 0
"""
    peer = parse_peer_config(text)
    assert peer.local_addresses == ("127.0.0.1", "::1")
    assert (peer.port, peer.nat_t_port, peer.remote) == (15500, 15501, ("::1", 15600))
    assert peer.local_for("::1") == "::1"
    ike = peer.ike
    assert ike.local_id.id_type == IdType.ID_IPV4_ADDR
    assert ike.remote_id.id_type == IdType.ID_KEY_ID and ike.remote_id.data == b"\x01\x02"
    assert ike.psk == b"\x00\x01\xff"
    assert len(ike.ike_proposals) == 2
    assert (ike.fragmentation, ike.fragment_size, ike.force_nat_t) == (False, 1400, True)
    assert ike.nat_t_port == 15501 and ike.transport_mode
    assert [str(t) for t in ike.local_ts + ike.remote_ts] == [
        "10.1.0.0-10.1.255.255",
        "10.2.0.0-10.2.0.255",
    ]
    assert (ike.retransmit_timeout, ike.retransmit_base, ike.retransmit_tries) == (0.5, 1.0, 2)
    assert ike.require_cookie and ike.half_open_timeout == 5.0
    limits = peer.limits
    assert (limits.max_half_open, limits.max_half_open_per_peer) == (10, 3)
    assert (limits.cookie_threshold, limits.closed_linger) == (5, 0.0)


BAD_FIELDS = [
    (
        with_keys("ike", 'proposals = "aes999-prfsha256-x25519"'),
        "ike.proposals",
        "peer.toml: [ike] proposals: unknown algorithm 'aes999' in proposal "
        "'aes999-prfsha256-x25519'",
    ),
    (
        with_keys("esp", 'proposals = "aes256gcm16-sha999"'),
        "esp.proposals",
        "peer.toml: [esp] proposals: unknown algorithm 'sha999'",
    ),
    (
        MINIMAL.replace('local = "127.0.0.1"', 'local = "127.0.0.300"'),
        "peer.local",
        "peer.toml: [peer] local: '127.0.0.300' is not an IPv4 or IPv6 address",
    ),
    (
        MINIMAL.replace('local = "127.0.0.1"', "local = []"),
        "peer.local",
        "peer.toml: [peer] local: must name at least one address",
    ),
    (
        MINIMAL.replace('local = "127.0.0.1"\n', ""),
        "peer.local",
        "peer.toml: [peer] local: is required",
    ),
    (with_keys("peer", "port = 70000"), "peer.port", "[peer] port: must be from 0 to 65535"),
    (
        with_keys("peer", "port = 4500"),
        "peer.nat_t_port",
        "[peer] nat_t_port: must differ from port (4500)",
    ),
    (
        with_keys("peer", 'nat_t_port = "4500"'),
        "peer.nat_t_port",
        "[peer] nat_t_port: must be an integer, not a string",
    ),
    (
        with_keys("peer", 'remote = "::1"'),
        "peer.remote",
        "[peer] remote: no [peer] local address is IPv6 like ::1",
    ),
    (
        with_keys("peer", "remote_port = 0"),
        "peer.remote_port",
        "[peer] remote_port: must be from 1 to 65535",
    ),
    (
        MINIMAL.replace('local_id = "initiator.pqike.example"', 'local_id = ""'),
        "peer.local_id",
        "[peer] local_id: is required",
    ),
    (
        with_keys("peer", 'remote_id = "keyid:xyz"'),
        "peer.remote_id",
        "[peer] remote_id: identity 'keyid:xyz': keyid: must be followed by hex digits",
    ),
    (
        MINIMAL.replace('psk = "pqike-demo-psk"', ""),
        "peer.psk",
        "[peer] psk: is required (or give psk_hex)",
    ),
    (
        with_keys("peer", 'psk_hex = "00"'),
        "peer.psk",
        "[peer] psk: give either psk or psk_hex, not both",
    ),
    (
        MINIMAL.replace('psk = "pqike-demo-psk"', 'psk_hex = "0xzz"'),
        "peer.psk_hex",
        "[peer] psk_hex: must be hexadecimal digits",
    ),
    (
        with_keys("ike", 'fragmentation = "yes"'),
        "ike.fragmentation",
        "[ike] fragmentation: must be true or false, not a string",
    ),
    (
        with_keys("ike", "fragment_size = 500"),
        "ike.fragment_size",
        "[ike] fragment_size: must be from 576 to 65535, not 500",
    ),
    (
        with_keys("ike", "force_nat_t = 1"),
        "ike.force_nat_t",
        "[ike] force_nat_t: must be true or false, not an integer",
    ),
    (
        with_keys("esp", 'mode = "beet"'),
        "esp.mode",
        "[esp] mode: must be 'tunnel' or 'transport', not 'beet'",
    ),
    (
        with_keys("esp", 'local_ts = ["10.0.0.0/33"]'),
        "esp.local_ts",
        "[esp] local_ts: '10.0.0.0/33' is not a network in CIDR form",
    ),
    (
        with_keys("esp", "remote_ts = [10]"),
        "esp.remote_ts",
        "[esp] remote_ts: must list CIDR strings, not an integer",
    ),
    (
        with_keys("retransmit", "timeout = 0"),
        "retransmit.timeout",
        "[retransmit] timeout: must be greater than 0, not 0",
    ),
    (
        with_keys("retransmit", "base = 0.5"),
        "retransmit.base",
        "[retransmit] base: must be at least 1, not 0.5",
    ),
    (
        with_keys("retransmit", "tries = -1"),
        "retransmit.tries",
        "[retransmit] tries: must be from 0 to 100, not -1",
    ),
    (
        with_keys("responder", "max_half_open = 1.5"),
        "responder.max_half_open",
        "[responder] max_half_open: must be an integer, not a number",
    ),
    (
        with_keys("responder", "cookie_threshold = -1"),
        "responder.cookie_threshold",
        "[responder] cookie_threshold: must be at least 0, not -1",
    ),
    (
        with_keys("responder", "half_open_timeout = inf"),
        "responder.half_open_timeout",
        "[responder] half_open_timeout: must be greater than 0, not inf",
    ),
    (
        with_keys("responder", "closed_linger = -2"),
        "responder.closed_linger",
        "[responder] closed_linger: must be at least 0, not -2",
    ),
    (
        with_keys("ike", "fragmnt_size = 1280"),
        "ike.fragmnt_size",
        "peer.toml: [ike] fragmnt_size: unknown key; expected one of proposals, fragmentation,",
    ),
    (
        MINIMAL + "\n[child]\nmode = 'tunnel'\n",
        "child",
        "peer.toml: [child]: unknown section; expected one of [peer], [ike], [esp],",
    ),
    (
        "ike = 3\n" + MINIMAL,
        "ike",
        "peer.toml: ike: must be a [ike] section",
    ),
    ("[peer\nlocal=1", "file", "peer.toml: invalid TOML: "),
]


@pytest.mark.parametrize(
    ("text", "field", "message"), BAD_FIELDS, ids=[f for _, f, _ in BAD_FIELDS]
)
def test_each_bad_field_gets_one_sentence_naming_it(text, field, message):
    exc = error_of(text)
    assert exc.field == field
    assert str(exc).startswith(message) or f"peer.toml: {message}" in str(exc)
    assert "\n" not in str(exc)


def test_a_method_without_an_available_backend_is_refused_when_loading():
    openssl_only = KeyExchangeRegistry()
    openssl_only.register(OpenSslBackend(), infos=STANDARD_METHODS)  # no ML-KEM-512 there
    text = with_keys("ike", 'proposals = "aes256gcm16-prfsha256-x25519-ke1_mlkem512"')
    with pytest.raises(ConfigurationError) as info:
        parse_peer_config(text, registry=openssl_only)
    assert info.value.field == "ike.proposals"
    assert str(info.value).startswith(
        "peer.toml: [ike] proposals: key exchange method 'mlkem512' has no crypto backend here"
    )


def test_initiating_needs_a_remote():
    peer = parse_peer_config(MINIMAL)
    with pytest.raises(ConfigurationError) as info:
        peer.remote  # noqa: B018 - the property raises
    assert str(info.value) == "peer.toml: [peer] remote: required to initiate"


def test_a_responder_with_a_remote_answers_only_that_peer():
    peer = parse_peer_config(with_keys("peer", 'remote = "127.0.0.9"'))
    config_for = peer.responder_config()
    assert config_for(("127.0.0.1", 500), ("127.0.0.9", 40000)) is peer.ike
    assert config_for(("127.0.0.1", 500), ("127.0.0.8", 500)) is None
    anyone = parse_peer_config(MINIMAL).responder_config()
    assert anyone(("127.0.0.1", 500), ("192.0.2.77", 500)) is not None


def test_an_unreadable_file_names_itself(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigurationError) as info:
        load_peer_config(missing)
    assert str(info.value).startswith(f"{missing}: cannot be read")


def test_a_backend_can_be_chosen_per_method():
    peer = parse_peer_config(with_keys("ike", 'backends = { mlkem768 = "pqcrypto" }'))
    assert peer.ike.kex_backends == ((36, "pqcrypto"),)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{ mlkem768 = "nosuch" }', "unknown key exchange backend 'nosuch'"),
        ('{ mlkem768 = "liboqs" }', "backend 'liboqs' cannot run mlkem768 here"),
        ('{ mlkem9 = "pqcrypto" }', "unknown key exchange method name 'mlkem9'"),
        ('"pqcrypto"', "must be a table of method = backend"),
    ],
)
def test_a_bad_backend_choice_names_the_field(value, problem):
    exc = error_of(with_keys("ike", f"backends = {value}"))
    assert exc.field == "ike.backends"
    assert problem in str(exc) and "\n" not in str(exc)


def test_lifetimes_default_to_strongswans():
    ike = parse_peer_config(MINIMAL).ike
    assert (ike.rekey_time, ike.over_time, ike.rand_time, ike.dpd_delay) == (14400, None, None, 0)
    assert ike.ike_lifetimes == (14400, 15840, 1440)
    assert (ike.child_rekey_time, ike.child_life_time, ike.child_rand_time) == (3600, None, None)
    assert ike.child_lifetimes == pytest.approx((3600, 3960, 360))


def test_lifetimes_take_strongswans_time_syntax_and_plain_seconds():
    text = with_keys(
        "ike", 'rekey_time = "4h"', 'over_time = "5m"', "rand_time = 0", 'dpd_delay = "30s"'
    )
    text = with_keys(
        "esp",
        'proposals = "aes256gcm16-x25519-ke1_mlkem768"',
        'rekey_time = "90"',
        "life_time = 100.5",
        'rand_time = "1d"',
        base=text,
    )
    ike = parse_peer_config(text).ike
    assert (ike.rekey_time, ike.over_time, ike.rand_time, ike.dpd_delay) == (14400, 300, 0, 30)
    assert (ike.child_rekey_time, ike.child_life_time, ike.child_rand_time) == (90, 100.5, 86400)
    types = {t.type for t in ike.esp_proposals[0].transforms}
    assert {TransformType.KE, TransformType.ADDKE1} <= types


@pytest.mark.parametrize(
    ("section", "line", "field", "message"),
    [
        (
            "ike",
            'rekey_time = "4 hours"',
            "ike.rekey_time",
            "peer.toml: [ike] rekey_time: must be a duration of zero or more, such as 30s, "
            "5m or 4h, not '4 hours'",
        ),
        ("ike", "dpd_delay = -1", "ike.dpd_delay", "[ike] dpd_delay: must be a duration"),
        ("ike", "over_time = true", "ike.over_time", "not a boolean"),
        ("esp", 'rand_time = "5x"', "esp.rand_time", "[esp] rand_time: must be a duration"),
        (
            "esp",
            'rekey_time = "1h"\nlife_time = "30m"',
            "esp.life_time",
            "peer.toml: [esp] life_time: must not be shorter than [esp] rekey_time (3600 s), "
            "not 1800 s",
        ),
    ],
)
def test_a_bad_lifetime_names_its_key(section, line, field, message):
    error = error_of(with_keys(section, line))
    assert error.field == field
    assert message in str(error)


# --- issue 10: protective defaults, permissions, one file name per error -------------


def test_responder_defaults_protect_like_strongswan():
    limits = parse_peer_config(MINIMAL).limits
    assert (limits.max_half_open, limits.max_half_open_per_peer) == (1000, 5)
    assert (limits.cookie_threshold, limits.cookie_threshold_per_peer) == (30, 3)
    assert (limits.reassembly_total, limits.reassembly_per_peer) == (48 << 20, 16 << 20)
    # x25519 alone: no big key exchange payload, a half-open SA gets 64 KiB and a bit.
    assert limits.reassembly_half_open == (64 << 10) + 32
    mceliece = parse_peer_config(
        with_keys("ike", 'proposals = "aes256gcm16-prfsha384-x25519-ke1_mceliece348864"')
    )
    assert mceliece.limits.reassembly_half_open == 261120 + (64 << 10)


def test_the_new_responder_keys_are_read_and_false_turns_a_bound_off():
    peer = parse_peer_config(
        with_keys(
            "responder",
            "max_half_open_per_peer = false",
            "cookie_threshold = false",
            "cookie_threshold_per_peer = 2",
            "replay_window = 5",
            "reassembly_budget = 1048576",
            "reassembly_per_peer = false",
            "reassembly_half_open = 4096",
        )
    )
    limits = peer.limits
    assert limits.max_half_open_per_peer is None and limits.cookie_threshold is None
    assert limits.cookie_threshold_per_peer == 2 and limits.replay_window == 5.0
    assert (limits.reassembly_total, limits.reassembly_per_peer) == (1 << 20, None)
    assert limits.reassembly_half_open == 4096


def test_a_per_peer_cookie_threshold_above_the_block_threshold_is_refused():
    exc = error_of(
        with_keys("responder", "max_half_open_per_peer = 2", "cookie_threshold_per_peer = 3")
    )
    assert exc.field == "responder.cookie_threshold_per_peer"
    assert str(exc).startswith("peer.toml: [responder] cookie_threshold_per_peer: must not be")
    assert error_of(with_keys("responder", "cookie_threshold = true")).field == (
        "responder.cookie_threshold"
    )


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("ike", 'backends = { mlkem768 = "nosuch" }'),
        ("esp", 'local_ts = ["10.0.0.0/33"]'),
        ("ike", 'fragmentation = "yes"'),
        ("retransmit", "timeout = 0"),
        ("responder", "half_open_timeout = -1"),
    ],
)
def test_an_error_names_the_file_once(tmp_path, section, line):
    path = tmp_path / "badbk.toml"
    path.write_text(with_keys(section, line))
    path.chmod(0o600)
    with pytest.raises(ConfigurationError) as info:
        load_peer_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: [{section}]") and text.count("badbk.toml") == 1


def test_a_psk_file_readable_by_others_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "peer.toml"
    path.write_text(MINIMAL)
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(ConfigurationError) as info:
            load_peer_config(path)
        text = str(info.value)
        assert text.startswith(f"{path}: holds a pre-shared key but is readable by group")
        assert f"mode {mode:04o}" in text and "\n" not in text
        assert info.value.field == "file"
        assert load_peer_config(path, allow_insecure_permissions=True).ike.psk
    path.chmod(0o600)
    assert load_peer_config(path).ike.psk == b"pqike-demo-psk"
    path.write_text(with_keys("peer", "allow_insecure_permissions = true"))
    path.chmod(0o644)
    assert load_peer_config(path).allow_insecure_permissions


def test_a_private_key_file_others_can_read_is_refused(tmp_path):
    from pqike.io.config import load_peer_config
    from pqike.pki import make_pki

    pki = make_pki(tmp_path, ["a.example", "b.example"], key_type="p256", intermediates=0)
    key = pki.entities["a.example"].key_path
    cert = pki.entities["a.example"].cert_path
    conf = tmp_path / "peer.toml"
    conf.write_text(
        "[peer]\nlocal = \"192.0.2.1\"\nlocal_id = \"a.example\"\n"
        f"[auth]\nkey = \"{key}\"\ncertificate = \"{cert}\"\ncacerts = \"{pki.ca_path}\"\n"
    )
    conf.chmod(0o644)  # no secret in the file itself: fine
    assert load_peer_config(conf).private_key_file == key
    key.chmod(0o644)
    with pytest.raises(ConfigurationError, match="is a private key but is readable by group"):
        load_peer_config(conf)
    assert load_peer_config(conf, allow_insecure_permissions=True).ike.credential is not None


def test_the_preset_decides_what_is_not_given():
    peer = parse_peer_config(
        with_keys("ike", 'preset = "strongswan"', 'additional_addresses = ["2001:db8::7"]')
    )
    ike = peer.ike
    assert (ike.preset, ike.fragmentation, ike.force_nat_t) == ("strongswan", True, True)
    assert ike.additional_addresses == ("2001:db8::7",)
    assert ike.local_ts == ike.remote_ts == ()  # strongSwan's dynamic: our own address
    minimal = parse_peer_config(with_keys("ike", 'preset = "minimal"', "force_nat_t = true"))
    assert (minimal.ike.fragmentation, minimal.ike.force_nat_t) == (False, True)


def test_a_bad_preset_or_address_names_the_key():
    err = error_of(with_keys("ike", 'preset = "charon"'))
    assert err.field == "ike.preset" and "pqike, strongswan, minimal" in str(err)
    err = error_of(with_keys("ike", 'additional_addresses = ["host"]'))
    assert err.field == "ike.additional_addresses"
    assert str(err).count("peer.toml") == 1
