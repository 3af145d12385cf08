"""Key exchange methods: full exchanges, published known answers, refusal of bad peer values."""

import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.constants import KeyExchangeMethod as M
from pqike.constants import NotifyType
from pqike.crypto.kex import (
    DEFAULT_REGISTRY,
    STANDARD_METHODS,
    EcdhExchange,
    KeyExchange,
    KeyExchangeBackend,
    KeyExchangeInfo,
    KeyExchangeRegistry,
    MlKemExchange,
    ModpExchange,
    OpenSslBackend,
    XdhExchange,
    create_key_exchange,
)
from pqike.errors import ConfigurationError, InvalidSyntax, LocalProtocolError
from pqike.ike.prepared import PreparedKeys

AVAILABLE = [
    info for info in STANDARD_METHODS if DEFAULT_REGISTRY.is_available(info.method, "openssl")
]
IDS = [info.name for info in AVAILABLE]


def test_openssl_backend_offers_every_method_but_mlkem512():
    assert [info.name for info in AVAILABLE] == [
        "modp2048",
        "modp3072",
        "modp4096",
        "ecp256",
        "ecp384",
        "ecp521",
        "x25519",
        "x448",
        "mlkem768",
        "mlkem1024",
    ]


# --- full exchanges -------------------------------------------------------------------


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
def test_full_exchange_agrees_on_a_secret_of_the_right_size(info):
    initiator = create_key_exchange(info.method)
    responder = create_key_exchange(info.method)
    kei = initiator.public_data()
    ker, responder_secret = responder.respond(kei)
    initiator_secret = initiator.complete(ker)
    assert initiator_secret == responder_secret
    assert (len(kei), len(ker), len(initiator_secret)) == (
        info.initiator_size,
        info.responder_size,
        info.secret_size,
    )
    assert initiator.method == responder.method == info.method


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
def test_exchange_works_with_roles_swapped_and_keys_are_fresh(info):
    # The same two parties, the other one initiating this time: new key pairs, new secret.
    first_i, first_r = create_key_exchange(info.method), create_key_exchange(info.method)
    ker, first_secret = first_r.respond(first_i.public_data())
    assert first_i.complete(ker) == first_secret

    second_i, second_r = create_key_exchange(info.method), create_key_exchange(info.method)
    kei = second_i.public_data()
    assert kei != first_i.public_data()
    ker, second_secret = second_r.respond(kei)
    assert second_i.complete(ker) == second_secret != first_secret


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
def test_a_prepared_exchange_works_in_either_role_and_keeps_its_prepared_key(info):
    # prepare() does ahead what needs no peer data (a DH key pair); the object still
    # takes one role for one exchange.
    prepared_r, initiator = create_key_exchange(info.method), create_key_exchange(info.method)
    prepared_r.prepare()
    ker, secret = prepared_r.respond(initiator.public_data())
    assert initiator.complete(ker) == secret
    with pytest.raises(LocalProtocolError):
        prepared_r.respond(initiator.public_data())
    prepared_i, responder = create_key_exchange(info.method), create_key_exchange(info.method)
    prepared_i.prepare()
    kei = prepared_i.public_data()
    ker, secret = responder.respond(kei)
    assert prepared_i.complete(ker) == secret
    if info.kind != "kem":  # the responder's public value is the one prepared
        other = create_key_exchange(info.method)
        other.prepare()
        public = other.public_data()
        fresh = create_key_exchange(info.method)
        fresh.prepare()
        assert fresh.respond(kei)[0] != public


def test_prepared_keys_hand_out_each_key_pair_once():
    pool = PreparedKeys(DEFAULT_REGISTRY)
    first = pool.take(M.CURVE25519, None)
    assert len(pool) == 0
    pool.refill()
    assert len(pool) == 1
    second = pool.take(M.CURVE25519, None)
    assert second is not first and len(pool) == 0
    initiator = create_key_exchange(M.CURVE25519)
    kei = initiator.public_data()
    ker1, _ = first.respond(kei)
    ker2, secret = second.respond(kei)
    assert ker1 != ker2 and initiator.complete(ker2) == secret
    third = pool.take(M.CURVE25519, None)  # none ready: made on the spot
    assert third is not second


def test_public_data_is_generated_once():
    exchange = create_key_exchange(M.CURVE25519)
    assert exchange.public_data() == exchange.public_data()


def test_roles_cannot_be_mixed():
    initiator = create_key_exchange(M.CURVE25519)
    with pytest.raises(LocalProtocolError):
        initiator.complete(bytes(32))  # before public_data()
    responder = create_key_exchange(M.CURVE25519)
    responder.respond(initiator.public_data())
    with pytest.raises(LocalProtocolError):
        responder.respond(initiator.public_data())  # a key pair is used once
    with pytest.raises(LocalProtocolError):
        responder.public_data()


# --- known answers ----------------------------------------------------------------------


def test_ecp256_matches_rfc5903_section_8_1():
    i = 0xC88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433
    r = 0xC6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53
    gi = bytes.fromhex(
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
        "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
    )
    gr = bytes.fromhex(
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
        "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
    )
    gir = bytes.fromhex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
    initiator = EcdhExchange(M.ECP256, private_key=ec.derive_private_key(i, ec.SECP256R1()))
    responder = EcdhExchange(M.ECP256, private_key=ec.derive_private_key(r, ec.SECP256R1()))
    assert initiator.public_data() == gi
    assert responder.respond(gi) == (gr, gir)
    assert initiator.complete(gr) == gir


def test_x25519_matches_rfc7748_section_6_1():
    alice = x25519.X25519PrivateKey.from_private_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = x25519.X25519PrivateKey.from_private_bytes(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    alice_public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    initiator = XdhExchange(M.CURVE25519, private_key=alice)
    assert initiator.public_data() == alice_public
    assert XdhExchange(M.CURVE25519, private_key=bob).respond(alice_public) == (bob_public, shared)
    assert initiator.complete(bob_public) == shared


def test_x448_matches_rfc7748_section_6_2():
    alice = x448.X448PrivateKey.from_private_bytes(
        bytes.fromhex(
            "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
            "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b"
        )
    )
    bob = x448.X448PrivateKey.from_private_bytes(
        bytes.fromhex(
            "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d"
            "6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d"
        )
    )
    alice_public = bytes.fromhex(
        "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c"
        "22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0"
    )
    bob_public = bytes.fromhex(
        "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b430"
        "27d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609"
    )
    shared = bytes.fromhex(
        "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
        "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d"
    )
    initiator = XdhExchange(M.CURVE448, private_key=alice)
    assert initiator.public_data() == alice_public
    assert XdhExchange(M.CURVE448, private_key=bob).respond(alice_public) == (bob_public, shared)
    assert initiator.complete(bob_public) == shared


# RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k).
RFC3526_K = {M.MODP2048: (2048, 124476), M.MODP3072: (3072, 1690314), M.MODP4096: (4096, 240904)}


def pi_times_power_of_two(bits: int) -> int:
    """floor(pi * 2^bits) by Machin's formula in integers, independent of any table."""
    guard = 64

    def arctan_inverse(x: int) -> int:
        one = 1 << (bits + guard)
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            n, sign = n + 1, -sign
        return total

    return (4 * (4 * arctan_inverse(5) - arctan_inverse(239))) >> guard


def rfc3526_prime(method: int) -> int:
    n, k = RFC3526_K[method]
    return 2**n - 2 ** (n - 64) - 1 + 2**64 * (pi_times_power_of_two(n - 130) + k)


def modp_private_key(method: int, x: int):
    p = rfc3526_prime(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        from cryptography.hazmat.primitives.asymmetric import dh

        group = dh.DHParameterNumbers(p, 2, (p - 1) // 2)
        return dh.DHPrivateNumbers(x, dh.DHPublicNumbers(pow(2, x, p), group)).private_key()


@pytest.mark.parametrize("method", list(RFC3526_K))
def test_modp_public_values_live_in_the_rfc3526_group(method):
    p = rfc3526_prime(method)
    size = p.bit_length() // 8
    kei = create_key_exchange(method).public_data()
    assert len(kei) == size
    y = int.from_bytes(kei, "big")
    assert 1 < y < p - 1
    # g = 2 generates the prime-order subgroup of the safe prime: y^q = 1.
    assert pow(y, (p - 1) // 2, p) == 1


def test_modp_values_and_secret_are_zero_padded_to_the_prime_length():
    # x and the peer exponent were chosen so that g^x and g^xr both start with a zero byte.
    p = rfc3526_prime(M.MODP2048)
    x = 0x0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1FE3
    peer = pow(2, 217, p)
    initiator = ModpExchange(M.MODP2048, private_key=modp_private_key(M.MODP2048, x))
    kei = initiator.public_data()
    assert kei == pow(2, x, p).to_bytes(256, "big")
    assert len(kei) == 256 and kei[0] == 0
    secret = initiator.complete(peer.to_bytes(256, "big"))
    assert secret == pow(peer, x, p).to_bytes(256, "big")
    assert len(secret) == 256 and secret[0] == 0


# Curve parameters for an on-curve check that does not go through OpenSSL.
NIST_CURVES = {
    M.ECP256: (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        32,
    ),
    M.ECP384: (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            16,
        ),
        48,
    ),
    M.ECP521: (
        2**521 - 1,
        int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
        66,
    ),
}


@pytest.mark.parametrize("method", list(NIST_CURVES))
def test_ecp_public_value_is_x_then_y_on_the_curve(method):
    p, b, size = NIST_CURVES[method]
    kei = create_key_exchange(method).public_data()
    assert len(kei) == 2 * size  # no 0x04 prefix (RFC 5903 7)
    x, y = int.from_bytes(kei[:size], "big"), int.from_bytes(kei[size:], "big")
    assert (y * y - (x**3 - 3 * x + b)) % p == 0


# --- bad peer values ----------------------------------------------------------------------


def responder_and_initiator(method):
    """A fresh responder, and an initiator that has sent its KE data."""
    initiator = create_key_exchange(method)
    initiator.public_data()
    return create_key_exchange(method), initiator


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
def test_wrong_lengths_are_invalid_syntax(info):
    for size in (0, info.initiator_size - 1, info.initiator_size + 1):
        responder, _ = responder_and_initiator(info.method)
        with pytest.raises(InvalidSyntax):
            responder.respond(b"\x07" * size)
    for size in (0, info.responder_size - 1, info.responder_size + 1):
        _, initiator = responder_and_initiator(info.method)
        with pytest.raises(InvalidSyntax):
            initiator.complete(b"\x07" * size)


@pytest.mark.parametrize("method", list(RFC3526_K))
def test_modp_values_outside_2_to_p_minus_2_are_invalid_syntax(method):
    p = rfc3526_prime(method)
    size = p.bit_length() // 8
    for y in (0, 1, p - 1, p, p + 1, 2 ** (8 * size) - 1):
        responder, initiator = responder_and_initiator(method)
        value = y.to_bytes(size, "big")
        with pytest.raises(InvalidSyntax):
            responder.respond(value)
        with pytest.raises(InvalidSyntax):
            initiator.complete(value)


@pytest.mark.parametrize("method", list(NIST_CURVES))
def test_ecp_points_off_the_curve_are_invalid_syntax(method):
    p, _, size = NIST_CURVES[method]
    valid = create_key_exchange(method).public_data()
    off_curve = valid[:-1] + bytes([valid[-1] ^ 1])  # y changed: not on the curve
    x_too_big = p.to_bytes(size, "big") + valid[size:]  # x = p is not a field element
    zero = bytes(2 * size)  # (0, 0): not on these curves (b != 0), not infinity either
    for value in (off_curve, x_too_big, zero):
        responder, initiator = responder_and_initiator(method)
        with pytest.raises(InvalidSyntax):
            responder.respond(value)
        with pytest.raises(InvalidSyntax):
            initiator.complete(value)


# Points of small order (RFC 7748 section 6 and the usual blacklists), little-endian.
SMALL_ORDER = {
    M.CURVE25519: [
        bytes(32),  # 0
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        (2**255 - 19 - 1).to_bytes(32, "little"),  # p - 1
        (2**255 - 19).to_bytes(32, "little"),  # p, i.e. 0 again
    ],
    M.CURVE448: [
        bytes(56),
        (1).to_bytes(56, "little"),
        (2**448 - 2**224 - 2).to_bytes(56, "little"),  # p - 1
    ],
}


@pytest.mark.parametrize("method", list(SMALL_ORDER), ids=["x25519", "x448"])
def test_small_order_points_giving_an_all_zero_secret_are_invalid_syntax(method):
    for point in SMALL_ORDER[method]:
        responder, initiator = responder_and_initiator(method)
        with pytest.raises(InvalidSyntax, match="small-order"):
            responder.respond(point)
        with pytest.raises(InvalidSyntax, match="small-order"):
            initiator.complete(point)


@pytest.mark.parametrize("method", list(SMALL_ORDER), ids=["x25519", "x448"])
def test_respond_later_refuses_small_order_points_before_any_secret(method):
    # The two-step responder decides RFC 7748 6.1 from the value itself; the list it
    # uses must be exactly what OpenSSL refuses, with X25519's ignored top bit set too.
    points = list(SMALL_ORDER[method])
    points.append(
        ((2**448 - 2**224 - 1 if method == M.CURVE448 else 2**255 - 19) + 1).to_bytes(
            len(points[0]), "little"
        )
    )  # p + 1, i.e. 1 again
    if method == M.CURVE25519:
        points += [p[:-1] + bytes([p[-1] | 0x80]) for p in points]
    for point in points:
        with pytest.raises(InvalidSyntax, match="small-order"):
            create_key_exchange(method).respond(point)  # OpenSSL's all-zero refusal
        with pytest.raises(InvalidSyntax, match="small-order"):
            create_key_exchange(method).respond_later(point)


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
def test_respond_later_agrees_with_the_initiator(info):
    responder, initiator = responder_and_initiator(info.method)
    data, finish = responder.respond_later(initiator.public_data())
    assert initiator.complete(data) == finish()
    with pytest.raises(LocalProtocolError):
        responder.respond_later(initiator.public_data())  # one exchange per object


@given(st.binary(min_size=32, max_size=32))
@settings(max_examples=50, deadline=None)
def test_respond_later_refuses_what_respond_refuses_for_any_x25519_value(value):
    try:
        create_key_exchange(M.CURVE25519).respond(value)
        refused = False
    except InvalidSyntax:
        refused = True
    try:
        _, finish = create_key_exchange(M.CURVE25519).respond_later(value)
        finish()
        later_refused = False
    except InvalidSyntax:
        later_refused = True
    assert refused == later_refused


def with_coefficient(ek: bytes, index: int, value: int) -> bytes:
    """Set coefficient ``index`` of t-hat in ByteEncode12 form (FIPS 203 4.2.1)."""
    data = bytearray(ek)
    at = 3 * (index // 2)
    if index % 2 == 0:
        data[at] = value & 0xFF
        data[at + 1] = (data[at + 1] & 0xF0) | (value >> 8)
    else:
        data[at + 1] = (data[at + 1] & 0x0F) | ((value & 0x0F) << 4)
        data[at + 2] = value >> 4
    return bytes(data)


def coefficients(ek: bytes, k: int) -> list[int]:
    """ByteDecode12 of ek[:384k], straight from FIPS 203 (no OpenSSL involved)."""
    out = []
    for at in range(0, 384 * k, 3):
        b0, b1, b2 = ek[at : at + 3]
        out += [b0 | ((b1 & 0x0F) << 8), (b1 >> 4) | (b2 << 4)]
    return out


MLKEM_K = {M.ML_KEM_768: 3, M.ML_KEM_1024: 4}


@pytest.mark.parametrize("method", list(MLKEM_K), ids=["mlkem768", "mlkem1024"])
def test_mlkem_responder_applies_the_fips203_modulus_check(method):
    # OpenSSL performs the FIPS 203 7.2 modulus check when the key is loaded; this test
    # is what proves it, with coefficients set to q - 1 (valid), q and 4095 (invalid).
    k = MLKEM_K[method]
    ek = create_key_exchange(method).public_data()
    assert all(c < 3329 for c in coefficients(ek, k))
    last = 256 * k - 1
    for index in (0, 1, 137, last):
        edited = with_coefficient(ek, index, 3328)
        assert coefficients(edited, k)[index] == 3328
        ct, secret = create_key_exchange(method).respond(edited)
        assert (len(ct), len(secret)) == (DEFAULT_REGISTRY.info(method).responder_size, 32)
        for bad in (3329, 4095):
            edited = with_coefficient(ek, index, bad)
            assert coefficients(edited, k)[index] == bad
            with pytest.raises(InvalidSyntax, match="modulus"):
                create_key_exchange(method).respond(edited)


@pytest.mark.parametrize("method", list(MLKEM_K), ids=["mlkem768", "mlkem1024"])
def test_mlkem_tampered_ciphertext_gives_a_different_secret(method):
    # Implicit rejection (FIPS 203 6.3): no error, just a secret the responder lacks.
    initiator = create_key_exchange(method)
    ct, secret = create_key_exchange(method).respond(initiator.public_data())
    tampered = bytes([ct[0] ^ 1]) + ct[1:]
    assert initiator.complete(tampered) != secret
    assert len(initiator.complete(tampered)) == 32


def test_mlkem_seeded_key_is_deterministic():
    seed = bytes(range(64))
    first = MlKemExchange(M.ML_KEM_768, private_key=mlkem.MLKEM768PrivateKey.from_seed_bytes(seed))
    second = MlKemExchange(M.ML_KEM_768, private_key=mlkem.MLKEM768PrivateKey.from_seed_bytes(seed))
    assert first.public_data() == second.public_data()
    ct, secret = create_key_exchange(M.ML_KEM_768).respond(first.public_data())
    assert second.complete(ct) == secret


def test_bad_peer_values_map_to_invalid_syntax_notify():
    responder = create_key_exchange(M.CURVE25519)
    with pytest.raises(InvalidSyntax) as caught:
        responder.respond(bytes(32))
    assert caught.value.notify_type == NotifyType.INVALID_SYNTAX
    assert str(caught.value).count(".") <= 1  # one sentence


# --- the registry -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("modp2048", M.MODP2048),
        ("ecp521", M.ECP521),
        ("x25519", M.CURVE25519),
        ("curve25519", M.CURVE25519),
        ("x448", M.CURVE448),
        ("Curve448", M.CURVE448),
        ("MLKEM768", M.ML_KEM_768),
        ("mlkem512", M.ML_KEM_512),
    ],
)
def test_method_by_strongswan_keyword(name, method):
    assert DEFAULT_REGISTRY.method_by_name(name) == method


@pytest.mark.parametrize("name", ["", "none", "modp1024", "kyber768", "ke1_mlkem768"])
def test_unknown_names_are_configuration_errors(name):
    with pytest.raises(ConfigurationError):
        DEFAULT_REGISTRY.method_by_name(name)


@pytest.mark.parametrize("method", [0, M.MODP1024, M.BRAINPOOLP256, 999])
def test_unknown_methods_are_configuration_errors(method):
    with pytest.raises(ConfigurationError):
        DEFAULT_REGISTRY.info(method)
    with pytest.raises(ConfigurationError):
        create_key_exchange(method)
    assert not DEFAULT_REGISTRY.is_available(method)
    assert DEFAULT_REGISTRY.backends_for(method) == []


def test_mlkem512_is_known_but_unavailable_on_openssl():
    info = DEFAULT_REGISTRY.info(M.ML_KEM_512)
    assert (info.name, info.kind, info.initiator_size, info.responder_size, info.secret_size) == (
        "mlkem512",
        "kem",
        800,
        768,
        32,
    )
    # Other backends may provide it (tests/crypto/test_backends.py); OpenSSL does not.
    assert not DEFAULT_REGISTRY.is_available(M.ML_KEM_512, "openssl")
    assert "openssl" not in DEFAULT_REGISTRY.supporting_backends(M.ML_KEM_512)
    with pytest.raises(ConfigurationError):
        create_key_exchange(M.ML_KEM_512, "openssl")


def test_methods_are_listed_in_id_order_with_their_sizes():
    listed = {info.name: info for info in DEFAULT_REGISTRY.methods()}
    methods = [info.method for info in DEFAULT_REGISTRY.methods()]
    assert methods == sorted(methods)
    assert {info.method for info in STANDARD_METHODS} <= set(methods)
    assert (listed["mlkem768"].initiator_size, listed["mlkem768"].responder_size) == (1184, 1088)
    assert (listed["mlkem1024"].initiator_size, listed["mlkem1024"].responder_size) == (1568, 1568)
    assert listed["ecp521"].initiator_size == 132 and listed["ecp521"].secret_size == 66
    assert listed["x448"].kind == "ecx" and listed["modp4096"].kind == "modp"


def test_unknown_backend_is_a_configuration_error():
    assert not DEFAULT_REGISTRY.is_available(M.CURVE25519, "liboqs-not-registered")
    with pytest.raises(ConfigurationError):
        create_key_exchange(M.CURVE25519, "liboqs-not-registered")


class X25519OnlyBackend:
    """A second real backend for registry tests: X25519 through cryptography."""

    name = "x25519-only"

    def available(self) -> bool:
        return True

    def supports(self, method: int) -> bool:
        return method == M.CURVE25519

    def create(self, method: int) -> KeyExchange:
        return XdhExchange(method)


def test_registry_picks_backends_in_order_or_by_name():
    registry = KeyExchangeRegistry()
    registry.register(X25519OnlyBackend(), infos=STANDARD_METHODS)
    registry.register(OpenSslBackend())
    assert isinstance(X25519OnlyBackend(), KeyExchangeBackend)
    assert registry.backends_for(M.CURVE25519) == ["x25519-only", "openssl"]
    assert registry.backends_for(M.ECP256) == ["openssl"]
    assert not registry.is_available(M.ECP256, "x25519-only")
    with pytest.raises(ConfigurationError):
        registry.create(M.ECP256, "x25519-only")
    assert registry.create(M.ECP256).method == M.ECP256
    exchange = registry.create(M.CURVE25519, "x25519-only")
    ker, secret = create_key_exchange(M.CURVE25519).respond(exchange.public_data())
    assert exchange.complete(ker) == secret


def test_registry_refuses_conflicting_registrations():
    registry = KeyExchangeRegistry()
    registry.register(OpenSslBackend(), infos=STANDARD_METHODS)
    with pytest.raises(ConfigurationError):
        registry.register(OpenSslBackend())  # same backend name
    clash = KeyExchangeInfo(M.CURVE25519, "x25519", "ecx", 32, 32, 31)
    with pytest.raises(ConfigurationError):
        registry.register(X25519OnlyBackend(), infos=[clash])
    name_clash = KeyExchangeInfo(200, "mlkem768", "kem", 1, 1, 1)
    with pytest.raises(ConfigurationError):
        registry.register(X25519OnlyBackend(), infos=[name_clash])
    # Repeating an identical description is fine.
    registry.register(X25519OnlyBackend(), infos=STANDARD_METHODS[6:7])
    assert registry.backends_for(M.CURVE25519) == ["openssl", "x25519-only"]


def test_exchange_classes_refuse_foreign_methods():
    for cls, method in (
        (ModpExchange, M.ECP256),
        (EcdhExchange, M.MODP2048),
        (XdhExchange, M.ECP256),
        (MlKemExchange, M.ML_KEM_512),
    ):
        with pytest.raises(ConfigurationError):
            cls(method)


# --- properties ------------------------------------------------------------------------


@pytest.mark.parametrize("info", AVAILABLE, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_arbitrary_peer_data_raises_nothing_but_invalid_syntax(info, data):
    # Right-length random values reach the maths; other lengths stop at the length check.
    size = data.draw(st.sampled_from([info.initiator_size, info.responder_size, 0, 5]))
    value = data.draw(st.binary(min_size=size, max_size=size))
    responder, initiator = responder_and_initiator(info.method)
    for step in (responder.respond, initiator.complete):
        try:
            step(value)
        except InvalidSyntax:
            pass
