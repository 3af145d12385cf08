"""PRF and prf+ known answers (RFC 4868 2.7.1, RFC 7296 2.13)."""

import hmac

import pytest

from pqike.constants import PrfTransform
from pqike.crypto.prf import PRF_PLUS_MAX_BLOCKS, get_prf
from pqike.errors import ConfigurationError, LocalProtocolError

SHA256, SHA384, SHA512 = (
    PrfTransform.HMAC_SHA2_256,
    PrfTransform.HMAC_SHA2_384,
    PrfTransform.HMAC_SHA2_512,
)

# RFC 4868 2.7.1: PRF-1 .. PRF-6 (the same inputs as RFC 4231, untruncated outputs).
LARGE_KEY = b"\xaa" * 131
RFC4868_PRF_VECTORS = [
    (
        b"\x0b" * 20,
        b"Hi There",
        {
            SHA256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            SHA384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
            "faea9ea9076ede7f4af152e8b2fa9cb6",
            SHA512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
            "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        },
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        {
            SHA256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            SHA384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
            "8e2240ca5e69e2c78b3239ecfab21649",
            SHA512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        },
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        {
            SHA256: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            SHA384: "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
            "2a5ab39dc13814b94e3ab6e101a34f27",
            SHA512: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
            "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        },
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        {
            SHA256: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            SHA384: "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
            "6801dd23c4a7d679ccf8a386c674cffb",
            SHA512: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
            "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
        },
    ),
    (
        LARGE_KEY,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        {
            SHA256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            SHA384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
            "0c2ef6ab4030fe8296248df163f44952",
            SHA512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
            "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        },
    ),
    (
        LARGE_KEY,
        b"This is a test using a larger than block-size key and a larger than block-size"
        b" data. The key needs to be hashed before being used by the HMAC algorithm.",
        {
            SHA256: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            SHA384: "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
            "a678cc31e799176d3860e6110c46523e",
            SHA512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
            "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
        },
    ),
]


@pytest.mark.parametrize(("key", "data", "expected"), RFC4868_PRF_VECTORS)
@pytest.mark.parametrize("prf_id", [SHA256, SHA384, SHA512])
def test_prf_matches_rfc4868_vectors(prf_id, key, data, expected):
    assert get_prf(prf_id)(key, data).hex() == expected[prf_id]


@pytest.mark.parametrize(
    ("prf_id", "size", "name"),
    [(SHA256, 32, "prfsha256"), (SHA384, 48, "prfsha384"), (SHA512, 64, "prfsha512")],
)
def test_prf_sizes_follow_rfc4868(prf_id, size, name):
    prf = get_prf(prf_id)
    assert (prf.id, prf.key_size, prf.output_size, prf.name) == (prf_id, size, size, name)
    assert get_prf(prf_id) is prf  # one shared object per suite


@pytest.mark.parametrize("prf_id", [PrfTransform.HMAC_SHA1, PrfTransform.AES128_XCBC, 0, 999])
def test_unsupported_prf_is_a_configuration_error(prf_id):
    with pytest.raises(ConfigurationError):
        get_prf(prf_id)


KEY = bytes(range(32))
SEED = b"pqike prf+ seed"


def test_prf_plus_known_answer():
    # Straight-line RFC 7296 2.13 for the first four blocks, independent of Prf.plus.
    t1 = hmac.new(KEY, SEED + b"\x01", "sha256").digest()
    t2 = hmac.new(KEY, t1 + SEED + b"\x02", "sha256").digest()
    t3 = hmac.new(KEY, t2 + SEED + b"\x03", "sha256").digest()
    t4 = hmac.new(KEY, t3 + SEED + b"\x04", "sha256").digest()
    expected = (
        "0e82947c4b2e7b6e43959a950f453563eec79fdfc771b6eca71935c7a6d53d60"
        "ed1c52eff944e6ed5a7734f0fd7fdde9e1b7ec977c3e94b6b2208384aae40c24"
        "660d01c67ed413044d3642707f266b17bf7f3562e04966b3fa54017cec4d5b86"
        "0778bfb4"
    )
    assert (t1 + t2 + t3 + t4)[:100].hex() == expected
    assert get_prf(SHA256).plus(KEY, SEED, 100).hex() == expected


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 64, 65])
def test_prf_plus_prefixes_agree(length):
    prf = get_prf(SHA256)
    long = prf.plus(KEY, SEED, 200)
    assert prf.plus(KEY, SEED, length) == long[:length]


@pytest.mark.parametrize("prf_id", [SHA256, SHA384, SHA512])
def test_prf_plus_stops_at_255_blocks(prf_id):
    prf = get_prf(prf_id)
    name = {SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}[prf_id]
    limit = PRF_PLUS_MAX_BLOCKS * prf.output_size
    stream = prf.plus(KEY, SEED, limit)
    assert len(stream) == limit
    # The last block used counter 0xff on the previous block.
    t254 = stream[-2 * prf.output_size : -prf.output_size]
    assert stream[-prf.output_size :] == hmac.new(KEY, t254 + SEED + b"\xff", name).digest()
    with pytest.raises(LocalProtocolError):
        prf.plus(KEY, SEED, limit + 1)


def test_prf_plus_rejects_negative_length():
    with pytest.raises(LocalProtocolError):
        get_prf(SHA256).plus(KEY, SEED, -1)
