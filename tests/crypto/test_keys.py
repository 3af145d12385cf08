"""SKEYSEED, the SK_* split, the RFC 9370 update and Child SA KEYMAT with fixed inputs.

Every pinned value is also recomputed here with a straight-line HMAC prf+ so a wrong
pin and a wrong implementation cannot agree by construction.
"""

import hmac

import pytest

from pqike.constants import EncrTransform, IntegTransform, PrfTransform
from pqike.crypto.keys import (
    ChildKeys,
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    skeyseed,
    skeyseed_additional,
)
from pqike.crypto.prf import get_prf
from pqike.crypto.protect import encr_key_size, integ_key_size

NI = bytes(range(0x00, 0x20))
NR = bytes(range(0x20, 0x40))
SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")
G_IR = bytes(range(0x40, 0x60))

HASH = {
    PrfTransform.HMAC_SHA2_256: "sha256",
    PrfTransform.HMAC_SHA2_384: "sha384",
    PrfTransform.HMAC_SHA2_512: "sha512",
}
SK_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")


def reference_prf_plus(hash_name: str, key: bytes, seed: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(key, block + seed + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]


SUITES = {
    "aes256gcm16-prfsha384": {
        "prf": PrfTransform.HMAC_SHA2_384,
        "encr": (EncrTransform.AES_GCM_16, 256),
        "integ": IntegTransform.NONE,
        "lengths": (48, 0, 0, 36, 36, 48, 48),
        "skeyseed": "02912ef2a408bf5c1da073914cd8065b59976d25aadfd35dce5f6a60eb9b3a7e"
        "be3044eb8b45fe168062fa6fb6cf58f6",
        "keys": (
            "aba45a976d05121b003f9c6026e04bdd64879a23222cfa9968e1e0b705da5b0a"
            "b1736511647acc1f4a99facf1b52d83c",
            "",
            "",
            "40e1fc8e4c593e8e1595a5f5801fb2aa7e0e4161d6ebf0700a8cc30bf2db2d61df859e12",
            "e094a9d369c8c8a175bef1621c4afd46e27ba099b5dd7783eb2984a8fd202fee958816d1",
            "563d64108e37c5f8ed69626eaf5ac81a42152e556b0382993140b195fc9358cc"
            "b9a53f327c1ef844fc0ca4f2218c44f9",
            "3445530ea2257503d705059eeeba3c5c133aafe4b4c8c459ccf4635e0f9c2dcb"
            "29c919a8cfc8ecbf09b2b704c1ea9fd8",
        ),
    },
    "aes256-sha256-prfsha256": {
        "prf": PrfTransform.HMAC_SHA2_256,
        "encr": (EncrTransform.AES_CBC, 256),
        "integ": IntegTransform.HMAC_SHA2_256_128,
        "lengths": (32, 32, 32, 32, 32, 32, 32),
        "skeyseed": "fb7b0d6107cf71fb87cb4f19020bd81cc0f757a8f6a81a8a62c5b6f3a2660ac5",
        "keys": (
            "91638fdeeb3c8db95a94fbac0ab85e096e93fca6b79db28139f927e5b8a10efa",
            "e804fae7fe2e6bdf4a256871c7bc6809a0862d3bc5507438ac3c1e579aab4fa0",
            "9570986590c5e99a4105259f987650cc4e5c0c1e41f44719311434cf75865555",
            "2df9926eefa749687fe6c7fbe7a3fe6f5cc6cdcd1ba501fc7a2e3ee459ac384c",
            "a1b21da8996d2a30bbf266e4cf439b8bfe68b3e31ee5e242e7dbaf510ab2e487",
            "be4f6022e43c48603170aa3f7b65bf19d46140a8e56516de986a433baea3c202",
            "a87bd8bce0ac483ba4e58d47a20ff78cc92cfafd8db00f816158ea4e2f7686ff",
        ),
    },
    "chacha20poly1305-prfsha512": {
        "prf": PrfTransform.HMAC_SHA2_512,
        "encr": (EncrTransform.CHACHA20_POLY1305, None),
        "integ": IntegTransform.NONE,
        "lengths": (64, 0, 0, 36, 36, 64, 64),
        "skeyseed": "dc36e899d7b955564e10316fa4b6f5d65169bd8aa1a3df0537bb95c4b5cd40b8"
        "da527af7fbb96e84b1d1edeb31559d243b36286a85035aed490c22b86a3f144e",
        "keys": (
            "ff314dc5c5a2b28797c8d40e8bc4d69f4679e50b7cd9d6d80b55cd1d4383517c"
            "47d1527a568cb83867d2da0e533cabef15891677b782a1c379ee5cc415c872e6",
            "",
            "",
            "bf1bec64157c2f29e157d4406fb3c90053c11aec35129b82ae8079ee33464d35645bf697",
            "7ecd8a0793956a9f41c3f4e0233177091a43b30b6ec4cf26ef8798fdb997b63c8c0b74ee",
            "4cc1d155f0567c58f1c59308a143d259b3ec2e0517adfda650f77a3f938da7e5"
            "db9d7599c3691003c1ab624688a71ccc5fff118f0793aebb1f070a5765b95648",
            "1e141881ce4342fc8b1364dbdddc495cfb4c33ff4d19ff3989d43b9c2a4752f8"
            "d335bbc1440e81034db1a2d6738825c40e47d8df9dc84350a87e27eee3165bf5",
        ),
    },
}


def suite_keys(suite):
    prf = get_prf(suite["prf"])
    seed = skeyseed(prf, NI, NR, G_IR)
    keys = derive_ike_keys(
        prf,
        seed,
        NI,
        NR,
        SPI_I,
        SPI_R,
        encr_key_size=encr_key_size(*suite["encr"]),
        integ_key_size=integ_key_size(suite["integ"]),
    )
    return seed, keys


@pytest.mark.parametrize("name", SUITES)
def test_skeyseed_is_prf_of_nonces_over_shared_secret(name):
    suite = SUITES[name]
    seed, _ = suite_keys(suite)
    assert seed == hmac.new(NI + NR, G_IR, HASH[suite["prf"]]).digest()
    assert seed.hex() == suite["skeyseed"]


@pytest.mark.parametrize("name", SUITES)
def test_ike_keys_are_split_in_rfc7296_order(name):
    suite = SUITES[name]
    seed, keys = suite_keys(suite)
    got = tuple(getattr(keys, field) for field in SK_NAMES)
    assert tuple(len(key) for key in got) == suite["lengths"]
    assert tuple(key.hex() for key in got) == suite["keys"]
    # Independent: one prf+ stream cut at the RFC 7296 2.14 boundaries.
    stream = reference_prf_plus(
        HASH[suite["prf"]], seed, NI + NR + SPI_I + SPI_R, sum(suite["lengths"])
    )
    assert b"".join(got) == stream


@pytest.mark.parametrize(
    ("prf_id", "encr", "integ", "lengths"),
    [
        (
            PrfTransform.HMAC_SHA2_256,
            (EncrTransform.AES_GCM_16, 128),
            0,
            (32, 0, 0, 20, 20, 32, 32),
        ),
        (
            PrfTransform.HMAC_SHA2_512,
            (EncrTransform.AES_CBC, 128),
            IntegTransform.HMAC_SHA2_512_256,
            (64, 64, 64, 16, 16, 64, 64),
        ),
        (
            PrfTransform.HMAC_SHA2_384,
            (EncrTransform.AES_CBC, 192),
            IntegTransform.HMAC_SHA2_384_192,
            (48, 48, 48, 24, 24, 48, 48),
        ),
    ],
)
def test_ike_key_lengths_for_other_suites(prf_id, encr, integ, lengths):
    seed, keys = suite_keys({"prf": prf_id, "encr": encr, "integ": integ})
    got = tuple(getattr(keys, field) for field in SK_NAMES)
    assert tuple(len(key) for key in got) == lengths
    stream = reference_prf_plus(HASH[prf_id], seed, NI + NR + SPI_I + SPI_R, sum(lengths))
    assert b"".join(got) == stream


def test_rfc9370_intermediate_update_known_answer():
    # After IKE_SA_INIT (aes256gcm16-prfsha384) an ML-KEM round gives SK(1); the new
    # SKEYSEED is prf(SK_d(0), SK(1) | Ni | Nr) and the keys are re-expanded with the
    # IKE_SA_INIT nonces and SPIs (RFC 9370 2.2.2).
    suite = SUITES["aes256gcm16-prfsha384"]
    prf = get_prf(suite["prf"])
    _, keys0 = suite_keys(suite)
    sk1 = bytes(range(0x60, 0x80))
    seed1 = skeyseed_additional(prf, keys0.sk_d, sk1, NI, NR)
    assert seed1 == hmac.new(keys0.sk_d, sk1 + NI + NR, "sha384").digest()
    assert seed1.hex() == (
        "b8ebdef53a400b7a6235cc2b81ce3e2927eda55f4c34ab3ce53d8ca9ed7c6bf7"
        "deea5b97eadb1f6e6261d93f157cc480"
    )
    keys1 = derive_ike_keys(prf, seed1, NI, NR, SPI_I, SPI_R, encr_key_size=36, integ_key_size=0)
    assert keys1.sk_d.hex() == (
        "7d03cf2e4a278abe078963beb634bfb164971e29bfb8f3423ebe3763f40ac8b6"
        "6feb755d689e392808b74f163a0c06d4"
    )
    assert keys1.sk_ei.hex() == (
        "e1c7cfe0457cb0376563297b5dbcdb7abf92c29a64d3f1bc9afaa9acc7e90f483cd4afd7"
    )
    assert keys1 != keys0


def test_rekey_with_additional_secrets_appends_them_after_the_nonces():
    # RFC 9370 2.2.4: SKEYSEED = prf(SK_d(old), SK(0) | Ni | Nr | SK(1) | ... | SK(n)).
    prf = get_prf(PrfTransform.HMAC_SHA2_256)
    sk_d = bytes(32)
    sk0, sk1, sk2 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    got = skeyseed_additional(prf, sk_d, sk0, NI, NR, additional_secrets=(sk1, sk2))
    assert got == hmac.new(sk_d, sk0 + NI + NR + sk1 + sk2, "sha256").digest()


def test_child_keymat_aead_known_answer():
    # Child SA from IKE_AUTH: KEYMAT = prf+(SK_d, Ni | Nr), ESP aes256gcm16 (36-byte keys).
    prf = get_prf(PrfTransform.HMAC_SHA2_384)
    sk_d = bytes.fromhex(
        "7d03cf2e4a278abe078963beb634bfb164971e29bfb8f3423ebe3763f40ac8b6"
        "6feb755d689e392808b74f163a0c06d4"
    )
    child = derive_child_keys(prf, sk_d, NI, NR, encr_key_size=36, integ_key_size=0)
    keymat = reference_prf_plus("sha384", sk_d, NI + NR, 72)
    assert child == ChildKeys(encr_i=keymat[:36], integ_i=b"", encr_r=keymat[36:], integ_r=b"")
    assert child.encr_i.hex() == (
        "5c65601a80ac5abe88fad3619269ec95b4d0e3a49debbb255eac6f2ed1479782e961059c"
    )
    assert child.encr_r.hex() == (
        "7d9b181f493f244c5a680fbb5ad073e61429ffb49be2c26fa42dc2fea3ab4c08c6d71466"
    )


def test_child_keymat_with_pfs_orders_encr_integ_per_direction():
    # CREATE_CHILD_SA with a KE: KEYMAT = prf+(SK_d, g^ir | Ni | Nr), split
    # encr_i | integ_i | encr_r | integ_r (RFC 7296 2.17), aes256 + sha256 = 32 + 32.
    prf = get_prf(PrfTransform.HMAC_SHA2_256)
    sk_d = bytes(range(32))
    child = derive_child_keys(
        prf, sk_d, NI, NR, encr_key_size=32, integ_key_size=32, shared_secret=G_IR
    )
    keymat = reference_prf_plus("sha256", sk_d, G_IR + NI + NR, 128)
    assert (child.encr_i, child.integ_i, child.encr_r, child.integ_r) == (
        keymat[0:32],
        keymat[32:64],
        keymat[64:96],
        keymat[96:128],
    )
    assert [k.hex() for k in (child.encr_i, child.integ_i, child.encr_r, child.integ_r)] == [
        "b9e285579d8b75408ca2fbc7d0671e75095667b5992545ef28dfae4fa34382a2",
        "eef5f8d632381e457cc2e9eeb817e859db2559d2f0efed4208e75d8f26a9e6c2",
        "9f62c913d478a9f243fe9c7781d6f732f150b5892d0c77b6a0be36786af58539",
        "6b9a8dbe547231f517994389c3ab8006b6958a7fe28d26efc1a9e4ce5836e426",
    ]


def test_child_keymat_with_additional_key_exchanges():
    # RFC 9370 2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)).
    prf = get_prf(PrfTransform.HMAC_SHA2_256)
    sk_d = bytes(range(32))
    sk1 = b"\x77" * 32
    child = derive_child_keys(
        prf,
        sk_d,
        NI,
        NR,
        encr_key_size=20,
        integ_key_size=0,
        shared_secret=G_IR,
        additional_secrets=(sk1,),
    )
    keymat = reference_prf_plus("sha256", sk_d, G_IR + NI + NR + sk1, 40)
    assert child.encr_i + child.encr_r == keymat
    assert child.integ_i == child.integ_r == b""


def test_key_containers_are_immutable():
    keys = IkeKeys(*(bytes([i]) for i in range(7)))
    with pytest.raises(AttributeError):
        keys.sk_d = b""  # type: ignore[misc]


def test_ike_key_schedule_is_init_then_rfc9370_updates():
    """One epoch per shared secret: RFC 7296 2.14 first, then RFC 9370 2.2.2 each round."""
    from pqike.crypto.keys import ike_key_schedule, initial_ike_keys, updated_ike_keys

    prf = get_prf(PrfTransform.HMAC_SHA2_256)
    ni, nr, spi_i, spi_r = b"\x01" * 32, b"\x02" * 32, b"\x03" * 8, b"\x04" * 8
    secrets = [b"\x05" * 32, b"\x06" * 32, b"\x07" * 32]
    sizes = {"encr_key_size": 36, "integ_key_size": 0}
    epochs = ike_key_schedule(prf, secrets, ni, nr, spi_i, spi_r, **sizes)
    first = derive_ike_keys(
        prf, skeyseed(prf, ni, nr, secrets[0]), ni, nr, spi_i, spi_r, **sizes
    )
    assert epochs[0] == first == initial_ike_keys(prf, secrets[0], ni, nr, spi_i, spi_r, **sizes)
    second = derive_ike_keys(
        prf,
        skeyseed_additional(prf, first.sk_d, secrets[1], ni, nr),
        ni,
        nr,
        spi_i,
        spi_r,
        **sizes,
    )
    assert epochs[1] == second
    assert epochs[2] == updated_ike_keys(prf, second, secrets[2], ni, nr, spi_i, spi_r, **sizes)
    assert ike_key_schedule(prf, [], ni, nr, spi_i, spi_r, **sizes) == []
